"""Perception studies: design (which stimuli, which cells), per-participant trial assignment,
the participant's answers, exclusions and the analysis.

- design.py: create_study, the stimulus plan, counts (a study's state, generation started,
  opened, closed, ready or failed: backend/services/study_lifecycle.py)
- participation.py: sessions (counted from consent, optionally capped), consent, the device
  check, trials, answers, completion, the per-session stimulus ids and the stimulus bytes a
  participant may fetch
- analysis.py: trial rows, exclusions, results (analyse_run: one run's points, psignifit fit and
  per-participant fits from plain counts), the trials CSV, a run's robust-accuracy curve
- analysis_cache.py: the analysis computed in the background when answers arrive, stored, and
  read by the results page
- preview.py: the runs a study may use, the researcher's preview of the stimuli, a stimulus
  file, the source image as stimuli are made from it
- stimuli.py: stimulus generation's data side (what is missing, storing each PNG and row,
  progress, the model's accuracy); the worker's task (worker.study_tasks) drives it
- common.py: what these share (utcnow, eps_key, stimuli_by_key, run_image_size, and the
  uncompressed PNG encoding every stimulus is stored and served in)

The names below are re-exported so that `from backend.services import studies` keeps
working; new code imports from the module that holds the name.
"""

from backend.services.studies.analysis import (
    CSV_COLUMNS,
    exclusions,
    results,
    robust_accuracy_curve,
    trials_csv,
)
from backend.services.studies.common import (
    eps_key,
    png_pixels,
    served_png,
    stimuli_by_key,
    stored_png,
    stored_png_size,
    utcnow,
)
from backend.services.studies.design import (
    StimulusSpec,
    create_study,
    stimulus_plan,
    study_counts,
)
from backend.services.studies.participation import (
    MIN_WINDOW_H,
    MIN_WINDOW_W,
    WINDOW_MARGIN_H,
    WINDOW_MARGIN_W,
    answer_trial,
    complete_session,
    example_pair,
    give_consent,
    pending_trials,
    public_info,
    record_device,
    session_id_of_stimulus,
    session_state,
    start_session,
    stimulus_bytes,
)
from backend.services.studies.preview import (
    preview_stimuli,
    source_array,
    source_runs,
    stimulus_file,
)

__all__ = [
    "CSV_COLUMNS",
    "MIN_WINDOW_H",
    "MIN_WINDOW_W",
    "WINDOW_MARGIN_H",
    "WINDOW_MARGIN_W",
    "StimulusSpec",
    "answer_trial",
    "complete_session",
    "create_study",
    "eps_key",
    "example_pair",
    "exclusions",
    "give_consent",
    "pending_trials",
    "png_pixels",
    "preview_stimuli",
    "public_info",
    "record_device",
    "results",
    "robust_accuracy_curve",
    "served_png",
    "session_id_of_stimulus",
    "session_state",
    "source_array",
    "source_runs",
    "start_session",
    "stimuli_by_key",
    "stimulus_bytes",
    "stimulus_file",
    "stimulus_plan",
    "stored_png",
    "stored_png_size",
    "study_counts",
    "trials_csv",
    "utcnow",
]
