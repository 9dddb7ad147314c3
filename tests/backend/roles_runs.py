"""Who may call the training-run routes (researchers and admins only)."""

STAFF = {"admin", "researcher"}

ROUTES = {
    ("POST", "/api/runs"): STAFF,
    ("GET", "/api/runs"): STAFF,
    ("GET", "/api/runs/defaults"): STAFF,
    ("GET", "/api/runs/compare"): STAFF,
    ("GET", "/api/runs/groups"): STAFF,
    ("GET", "/api/runs/{run_id}"): STAFF,
    ("GET", "/api/runs/{run_id}/events"): STAFF,
    ("POST", "/api/runs/{run_id}/cancel"): STAFF,
    ("POST", "/api/runs/{run_id}/retry"): STAFF,
    ("GET", "/api/runs/{run_id}/clone"): STAFF,
    ("GET", "/api/runs/{run_id}/files/{name}"): STAFF,
    ("GET", "/api/runs/{run_id}/salience"): STAFF,
    ("GET", "/api/runs/{run_id}/salience/{name}"): STAFF,
}

# sweeps (backend/routers/sweeps.py): researchers and admins only, as runs
ROUTES.update(
    {
        ("POST", "/api/sweeps"): STAFF,
        ("POST", "/api/sweeps/preview"): STAFF,
        ("GET", "/api/sweeps"): STAFF,
        ("GET", "/api/sweeps/{sweep_id}"): STAFF,
        ("GET", "/api/sweeps/{sweep_id}/export"): STAFF,
    }
)

# the queue of background work (backend/routers/work_queue.py): researchers and admins, as runs
ROUTES[("GET", "/api/queue")] = STAFF
