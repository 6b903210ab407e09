"""Instructor batch grading: ``python grade.py PATH...`` with several notebooks, a folder or a zip.

The flow (docs/batch.md is the instructor's guide):

    discover (notebooks, folders, zips) -> identities (file/folder names or --roster)
    -> decide per submission, against the gradebook:
         unchanged (same content, same grader, same scoring)  -> keep the stored row
         same content and grader, other points/tolerances/messages -> re-check stored snapshots
         anything else (new, changed, --force)               -> execute (fresh runs, in a worker process)
    -> gradebook.sqlite (a commit per submission)
    -> every export rebuilt from the whole gradebook (batch/publish.py) -> summary

`--export` (no PATH) only rebuilds the exports; `--override`, `--clear-override` and
`--comment` record an instructor's decision in the gradebook, then rebuild them
(batch/decisions.py).

Importing this package imports nothing else: the command line starts the batch's fork server and zygote
(``slots.start_soon``) first, so that their torch imports overlap. The batch's own process never imports torch: the
grader's facts come from the fork server (``facts.py``). ``tests/test_warm_start.py`` keeps both so.
"""
