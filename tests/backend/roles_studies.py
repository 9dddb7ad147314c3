"""Who may call the study routes. The participant routes are "public": no login, they are
authorised by the link token or the session token (checked in test_study_participate.py)."""

R = {"admin", "researcher"}
P = {"public"}

ROUTES = {
    ("GET", "/api/studies"): R,
    ("POST", "/api/studies"): R,
    ("GET", "/api/studies/source-runs"): R,
    ("GET", "/api/studies/{study_id}"): R,
    ("POST", "/api/studies/{study_id}/generate"): R,
    ("POST", "/api/studies/{study_id}/open"): R,
    ("POST", "/api/studies/{study_id}/close"): R,
    ("GET", "/api/studies/{study_id}/results"): R,
    ("GET", "/api/studies/{study_id}/trials.csv"): R,
    ("GET", "/api/studies/{study_id}/trials.json"): R,
    ("GET", "/api/studies/{study_id}/stimuli"): R,
    ("GET", "/api/studies/{study_id}/stimuli/{stimulus_id}/image"): R,
    ("GET", "/api/studies/{study_id}/preview-session"): R,
    ("POST", "/api/studies/{study_id}/preview-device"): R,
    ("GET", "/api/participate/links/{link_token}"): P,
    ("POST", "/api/participate/links/{link_token}/sessions"): P,
    ("GET", "/api/participate/{session_token}"): P,
    ("POST", "/api/participate/{session_token}/consent"): P,
    ("POST", "/api/participate/{session_token}/device"): P,
    ("GET", "/api/participate/{session_token}/example"): P,
    ("GET", "/api/participate/{session_token}/trials"): P,
    ("POST", "/api/participate/{session_token}/trials/{trial_id}/answer"): P,
    ("POST", "/api/participate/{session_token}/complete"): P,
    ("GET", "/api/participate/{session_token}/stimuli/{public_id}"): P,
}
