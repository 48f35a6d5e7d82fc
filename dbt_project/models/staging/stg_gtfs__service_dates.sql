select
    feed_version,
    service_id,
    cast(date as date) as service_date
from {{ source('staged', 'gtfs_service_dates') }}
