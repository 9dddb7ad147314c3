"""Who may call the label studies' run-side route (researchers and admins, as runs)."""

ROUTES = {
    ("GET", "/api/runs/{run_id}/results"): {"admin", "researcher"},
}
