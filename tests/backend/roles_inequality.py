"""Who may call the inequality-evaluation routes (researchers and admins only)."""

STAFF = {"admin", "researcher"}

ROUTES = {
    ("POST", "/api/runs/inequality"): STAFF,
    ("GET", "/api/runs/inequality"): STAFF,
    ("GET", "/api/runs/inequality/{evaluation_id}"): STAFF,
}
