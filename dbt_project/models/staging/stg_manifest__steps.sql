select
    run_id,
    -- the manifest names the column after a keyword: keep it quoted
    "at" as step_at,  -- noqa: RF06
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
