select
    run_id,
    operator,
    feed,
    original_name,
    raw_key,
    size_bytes,
    sha256,
    delivered_at,
    received_at,
    contract_version,
    declared_date,
    deadline_at,
    is_late,
    duplicate_of,
    judged_at,
    judged_on
from {{ source('manifest', 'deliveries') }}
