# Label Studio installed the way the tests and `make demo` install it: pip, its own environment.
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN pip install label-studio==1.23.2
EXPOSE 8080
