"""The plan of the whole real-data chain on Kaggle, before any work (`python -m interceptor_lib plan`).

The campaign it describes:

- **Cache sessions** (CPU-only, no GPU quota) preprocess the face-crop cache dataset by dataset in
  stage order (DFDC chunk by chunk in the stage-4 chunk order), each stopping at the session's time
  budget or when its output reaches the storage budget; a step resumes per video in the next one.
  Every cache session's output is attached read-only to the later sessions.
- **GPU sessions** train every model of `train.models` through stage 1, 2, 3, then stage 4 one DFDC
  chunk at a time, then run one `evaluate` step (notebooks 06-08). A training step resumes at any
  step boundary, so one that does not fit the rest of a session continues in the next. Each GPU
  session pays `plan.session_overhead_h` (install, attach, load) besides its GPU work.
- **Storage** per GPU session (attached inputs do not count): the training states of the step
  running ((keep_last + 1) x 3 x the fp32 weights: weights + AdamW's two moments), plus for every
  (model, stage) finished in the session its best fp32 weights and an fp16 export; a finished DFDC
  chunk keeps its best weights until its model's stage 4 finishes.

Hours come from throughput figures in params (`plan.*`), replaced by the measurements a run recorded
(interceptor_lib.training.throughput) in output_dir or train.previous_outputs. Sizes are the datasets'
published ones (`sizes="published"`) or the index table of a prepared run (`sizes="data"`).
"""

from interceptor_lib.pipeline.plan.format import format_plan, format_plan_markdown
from interceptor_lib.pipeline.plan.make import default_sizes, make_plan

__all__ = ["default_sizes", "format_plan", "format_plan_markdown", "make_plan"]
