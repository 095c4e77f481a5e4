"""Training through RQ, with a real redis-server on loopback (skipped where it is not installed)."""
import os
import shutil
import subprocess
import time

import pytest

from labelloop.backend import training
from labelloop.backend.config import Settings
from labelloop.backend.registry import ModelRegistry
from labelloop.scripts.services import free_port


@pytest.fixture(autouse=True)
def _needs_redis_server():
    if shutil.which("redis-server") is None:
        reason = "redis-server is not installed (.ci/run installs it with apt-get)"
        if os.environ.get("LABELLOOP_REQUIRE_SERVICES"):
            pytest.fail(reason + "; LABELLOOP_REQUIRE_SERVICES is set, so this is an error")
        pytest.skip(reason)


@pytest.fixture
def redis_url(tmp_path):
    import redis

    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)


def test_rq_trainer_queues_one_run_per_project_and_a_worker_runs_it(redis_url, monkeypatch, tmp_path):
    from rq import Queue, SimpleWorker

    runs = []
    monkeypatch.setattr(training, "retrain_project",
                        lambda pid, full, **kw: runs.append((pid, full)) or training.RunReport(pid, serving_version="v"))
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("LABELLOOP_MODEL_DIR", str(tmp_path))
    settings = Settings.from_env()
    trainer = training.make_trainer(settings, ModelRegistry(str(tmp_path), "default"))
    assert isinstance(trainer, training.RQTrainer)
    for _ in range(5):
        trainer.submit(7, "ANNOTATION_CREATED")
    trainer.submit(8, "START_TRAINING")
    queue: Queue = trainer.queue
    assert len(queue) == 2  # the burst for project 7 is one queued run
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    assert sorted(runs) == [(7, False), (8, True)]


def test_unreachable_redis_is_a_clear_error(tmp_path):
    settings = Settings(model_dir=str(tmp_path), redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(training.LabelloopError, match="Redis is unreachable"):
        training.make_trainer(settings, ModelRegistry(str(tmp_path), "default"))
