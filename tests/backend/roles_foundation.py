"""Who may call the foundation's routes. Keys: (method, path); values: roles allowed.
"public" = no login needed."""

ROUTES = {
    ("GET", "/api/health"): {"public"},
    ("POST", "/api/auth/login"): {"public"},
    ("POST", "/api/auth/logout"): {"public"},
    ("GET", "/api/auth/me"): {"admin", "researcher", "annotator"},
    ("POST", "/api/auth/sign-out-everywhere"): {"admin", "researcher", "annotator"},
    ("POST", "/api/auth/password"): {"admin", "researcher", "annotator"},
    ("GET", "/api/users"): {"admin"},
    ("POST", "/api/users"): {"admin"},
    ("PATCH", "/api/users/{user_id}"): {"admin"},
    ("POST", "/api/users/{user_id}/sign-out-everywhere"): {"admin"},
    ("GET", "/api/datasets"): {"admin", "researcher"},
    ("POST", "/api/datasets/import"): {"admin", "researcher"},
    ("GET", "/api/datasets/{dataset_id}"): {"admin", "researcher"},
    ("PATCH", "/api/datasets/{dataset_id}"): {"admin", "researcher"},
    ("GET", "/api/datasets/{dataset_id}/images"): {"admin", "researcher"},
    ("GET", "/api/datasets/{dataset_id}/assignments"): {"admin", "researcher"},
    ("PUT", "/api/datasets/{dataset_id}/assignments"): {"admin", "researcher"},
    ("GET", "/api/images/{image_id}/file"): {"admin", "researcher", "annotator"},
}
