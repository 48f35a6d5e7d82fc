select
    run_id,
    "at" as step_at,
    operator,
    feed,
    sha256,
    step,
    outcome,
    detail,
    rows_total,
    rows_valid,
    rows_invalid,
    dataset,
    partition_date,
    staged_key
from {{ source('manifest', 'steps') }}
