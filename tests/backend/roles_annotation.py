"""Who may call the annotation routes (annotator queue and saves; researcher review, consensus,
agreement, mask sets, export and import). Keys: (method, path); values: roles allowed."""

ANN = {"annotator"}
STAFF = {"researcher", "admin"}

ROUTES = {
    ("GET", "/api/annotate/datasets"): ANN,
    ("GET", "/api/annotate/next"): ANN,
    ("GET", "/api/annotate/images/{image_id}"): ANN,
    ("POST", "/api/annotate/images/{image_id}/skip"): ANN,
    ("PUT", "/api/annotate/images/{image_id}/mask"): ANN,
    ("POST", "/api/annotate/images/{image_id}/submit"): ANN,
    ("GET", "/api/annotate/images/{image_id}/superpixels"): ANN,
    ("POST", "/api/annotate/images/{image_id}/refine"): ANN,
    ("GET", "/api/annotate/images/{image_id}/proposal"): ANN,
    ("GET", "/api/reviews"): STAFF,
    ("POST", "/api/reviews/{annotation_id}"): STAFF,
    ("POST", "/api/reviews/bulk"): STAFF,
    ("GET", "/api/reviews/images/{image_id}"): STAFF,
    ("GET", "/api/annotations/{annotation_id}/mask.png"): STAFF,
    ("GET", "/api/images/{image_id}/consensus.png"): STAFF,
    ("GET", "/api/images/{image_id}/consensus-binary.png"): STAFF,
    ("GET", "/api/images/{image_id}/agreement"): STAFF,
    ("GET", "/api/datasets/{dataset_id}/agreement"): STAFF,
    ("POST", "/api/datasets/{dataset_id}/mask-sets"): STAFF,
    ("GET", "/api/datasets/{dataset_id}/mask-sets"): STAFF,
    ("GET", "/api/mask-sets/{mask_set_id}"): STAFF,
    ("GET", "/api/mask-sets/{mask_set_id}/images/{image_id}/consensus.png"): STAFF,
    ("GET", "/api/datasets/{dataset_id}/masks/export"): STAFF,
    ("POST", "/api/datasets/{dataset_id}/masks/import"): STAFF,
}
