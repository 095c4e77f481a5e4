"""Training shared by several processes: version numbering, CURRENT, the per-project lock, the RQ
queue's merging of full pulls, retries while Label Studio is down, and events while Redis is down.
Redis is a real redis-server on loopback (never 6379)."""
import multiprocessing
import threading
import time

import httpx
import pytest

from labelloop.backend import training
from labelloop.backend.config import Settings
from labelloop.backend.locks import training_lock
from labelloop.backend.registry import ModelRegistry
from labelloop.model.store import ModelStore
from labelloop.scripts.services import redis_service


class Tiny:
    """The smallest thing `ModelStore.save` can store; slow enough to make saves overlap."""

    def save(self, directory):
        time.sleep(0.01)
        (directory / "meta.json").write_text("{}")


def _save_many(root, n, out):
    store = ModelStore(root)
    out.put([store.save("9.1", Tiny()) for _ in range(n)])


def test_concurrent_saves_from_several_processes_get_distinct_versions_and_current_moves_forward(tmp_path):
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_save_many, args=(tmp_path, 8, out)) for _ in range(4)]
    seen = []
    store = ModelStore(tmp_path)
    for p in procs:
        p.start()
    while any(p.is_alive() for p in procs):  # watch CURRENT while they race
        current = store.current_version("9.1")
        if current:
            seen.append(int(current[1:]))
    for p in procs:
        p.join(30)
    names = [name for _ in procs for name in out.get(timeout=5)]
    assert sorted(names, key=lambda v: int(v[1:])) == [f"v{i}" for i in range(1, 33)]
    assert store.versions("9.1") == [f"v{i}" for i in range(1, 33)]
    assert store.current_version("9.1") == "v32"
    assert seen == sorted(seen), "CURRENT moved backwards"
    assert not [p.name for p in (tmp_path / "9.1" / "versions").iterdir() if p.name.startswith(".")]


def test_activate_refuses_to_move_current_backwards_unless_asked(tmp_path):
    store = ModelStore(tmp_path)
    store.save("1.1", Tiny())
    store.save("1.1", Tiny())
    assert store.activate("1.1", "v1") is False and store.current_version("1.1") == "v2"
    assert store.activate("1.1", "v1", allow_backwards=True) and store.current_version("1.1") == "v1"


def test_half_written_versions_are_discarded_and_never_served(tmp_path):
    store = ModelStore(tmp_path)
    store.save("1.1", Tiny())
    partial = tmp_path / "1.1" / "versions" / ".v0.abc123"
    partial.mkdir()
    (partial / "head.joblib").write_bytes(b"half")
    stale = tmp_path / "1.1" / ".CURRENT.k1ll3d.tmp"  # a trainer killed while it moved CURRENT
    stale.write_text("v", encoding="utf-8")
    assert store.versions("1.1") == ["v1"]
    assert store.discard_partial("1.1") == [".v0.abc123", stale.name] and not partial.exists()
    assert not stale.exists() and store.current_version("1.1") == "v1"
    assert store.save("1.1", Tiny()) == "v2"


@pytest.fixture
def redis(tmp_path):
    service = redis_service(tmp_path / "redis").start(timeout=30)
    yield service
    service.stop()


def _overlaps(hold, n=4):
    """Run ``hold()`` in n threads; return whether two were ever inside it at once."""
    inside, worst = [0], [0]
    guard = threading.Lock()

    def run():
        with hold():
            with guard:
                inside[0] += 1
                worst[0] = max(worst[0], inside[0])
            time.sleep(0.05)
            with guard:
                inside[0] -= 1

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return worst[0] > 1


def test_training_lock_lets_one_run_per_project_at_a_time(tmp_path, redis):
    assert not _overlaps(lambda: training_lock(3, model_dir=str(tmp_path)))
    assert not _overlaps(lambda: training_lock(3, model_dir=str(tmp_path), redis_url=redis.redis_url))
    # different projects do not wait for each other
    with training_lock(3, model_dir=str(tmp_path), redis_url=redis.redis_url):
        with training_lock(4, model_dir=str(tmp_path), redis_url=redis.redis_url, ttl_s=1):
            pass


def test_a_redis_lock_whose_holder_died_lapses_and_a_live_one_is_renewed(tmp_path, redis):
    import redis as redis_py

    conn = redis_py.Redis.from_url(redis.redis_url)
    conn.lock("labelloop:train-lock:5", timeout=1).acquire()  # a holder that never comes back
    t0 = time.monotonic()
    with training_lock(5, model_dir=str(tmp_path), redis_url=redis.redis_url, ttl_s=1):
        assert time.monotonic() - t0 >= 0.5
        time.sleep(1.5)  # longer than the expiry: the heartbeat must keep it
        assert conn.exists("labelloop:train-lock:5")


def _rq(redis, tmp_path, monkeypatch, runs, during=None):
    monkeypatch.setenv("REDIS_URL", redis.redis_url)
    monkeypatch.setenv("LABELLOOP_MODEL_DIR", str(tmp_path))

    def fake_retrain(pid, full, **kw):
        runs.append((pid, full))
        if during:
            during.pop(0)()
        return training.RunReport(pid, serving_version="v")

    monkeypatch.setattr(training, "retrain_project", fake_retrain)
    return training.make_trainer(Settings.from_env(), ModelRegistry(str(tmp_path), "default"))


def _drain(queue):
    from rq import SimpleWorker

    SimpleWorker([queue], connection=queue.connection).work(burst=True)


def test_a_full_pull_asked_while_a_run_is_queued_or_running_is_never_dropped(redis, tmp_path, monkeypatch):
    runs = []
    trainer = None
    # while the first run runs, a deletion arrives: it must queue a second run, with a full pull
    during = [lambda: trainer.submit(7, "ANNOTATIONS_DELETED")]
    trainer = _rq(redis, tmp_path, monkeypatch, runs, during)
    trainer.submit(7, "ANNOTATION_CREATED")
    trainer.submit(7, "ANNOTATIONS_DELETED")  # while queued: merged into the queued run
    assert len(trainer.queue) == 1
    _drain(trainer.queue)
    assert runs == [(7, True), (7, True)]
    trainer.submit(7, "ANNOTATION_CREATED")
    _drain(trainer.queue)
    assert runs[-1] == (7, False)  # the full pull was consumed, not repeated forever


def test_events_while_redis_is_down_are_queued_when_it_returns(redis, tmp_path, monkeypatch):
    runs = []
    trainer = _rq(redis, tmp_path, monkeypatch, runs)
    trainer.redeliver_every_s = 0.1
    redis.stop()
    trainer.submit(8, "START_TRAINING")  # must not raise: the webhook still answers
    redis.start(timeout=30)
    deadline = time.monotonic() + 10
    while len(trainer.queue) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    _drain(trainer.queue)
    assert runs == [(8, True)]


def test_the_thread_trainer_retries_with_backoff_while_label_studio_is_down(tmp_path, monkeypatch, caplog):
    calls = []

    def flaky(pid, full, **kw):
        calls.append((pid, full))
        if len(calls) < 3:
            raise training.LabelStudioDown(f"project {pid}: Label Studio at http://x is unreachable")
        return training.RunReport(pid, serving_version="v1")

    monkeypatch.setattr(training, "retrain_project", flaky)
    trainer = training.Trainer(Settings(model_dir=str(tmp_path)), ModelRegistry(str(tmp_path), "default"),
                               debounce_s=0, retry_backoff_s=(0.05, 0.05, 0.05))
    with caplog.at_level("WARNING"):
        trainer.submit(4, "START_TRAINING")
        deadline = time.monotonic() + 10
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert trainer.wait_idle(10)
    assert calls == [(4, True)] * 3  # the full pull survives the retries
    assert "retrying in" in caplog.text and "unreachable" in caplog.text


@pytest.mark.parametrize("exc, down", [
    (httpx.ConnectError("refused"), True),
    (httpx.ReadTimeout("slow"), True),
    (type("ApiError", (Exception,), {"status_code": 503})(), True),
    (type("ApiError", (Exception,), {"status_code": 404})(), False),
    (ValueError("bad config"), False),
])
def test_which_errors_mean_label_studio_is_down(exc, down):
    assert training._label_studio_down(exc) is down
