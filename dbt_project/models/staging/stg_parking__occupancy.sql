-- Every car-park reading delivered, valid or not (anomalies are counted, not hidden).
select
    operator,
    cast(service_date as date) as service_date,
    source_sha256,
    source_row,
    facility_id,
    facility_name,
    observed_at,
    capacity,
    occupied,
    free,
    entries,
    exits,
    is_valid,
    invalid_reason
from {{ source('staged', 'parking_occupancy') }}
