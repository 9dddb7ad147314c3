# One image for the API and the workers. CUDA comes with the torch wheel's NVIDIA packages;
# the worker service reserves a GPU in docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY backend backend
COPY worker worker
COPY runconfig runconfig
COPY migrations migrations
COPY alembic.ini ./
COPY frontend frontend
RUN pip install --no-cache-dir .
EXPOSE 8000
CMD ["uvicorn", "backend.main:app", "--host", "0.0.0.0", "--port", "8000"]
