select
    feed_version,
    route_id,
    coalesce(nullif(route_short_name, ''), route_id) as route_short_name,
    route_long_name,
    try_cast(route_type as integer) as route_type,
    route_color
from {{ source('staged', 'gtfs_routes') }}
