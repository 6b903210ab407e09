"""torchgrade: grade what students' PyTorch autograd notebooks computed, and how.

The pipeline (see ``pipeline.py``): load and validate -> locate tasks -> instrument ->
execute -> snapshot -> reference -> check -> score -> report.
"""

__version__ = "0.1.0"
