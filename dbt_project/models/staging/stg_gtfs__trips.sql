select
    feed_version,
    trip_id,
    route_id,
    service_id,
    coalesce(try_cast(direction_id as integer), 0) as direction_id,
    nullif(block_id, '') as block_id,
    nullif(shape_id, '') as shape_id
from {{ source('staged', 'gtfs_trips') }}
