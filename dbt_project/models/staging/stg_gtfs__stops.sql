select
    feed_version,
    stop_id,
    stop_name,
    try_cast(stop_lat as double) as stop_lat,
    try_cast(stop_lon as double) as stop_lon,
    nullif(zone_id, '') as zone_id,
    nullif(parent_station, '') as parent_station
from {{ source('staged', 'gtfs_stops') }}
