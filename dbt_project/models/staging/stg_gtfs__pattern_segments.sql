-- The segments between consecutive stops of each pattern, cut from its shape at ingestion
-- (ingestion/geometry.py): the path from stop to stop as longitude/latitude lists, its length
-- along the shape (null without a usable shape) and why the shape was not used, if it was not.
select
    feed_version,
    pattern_id,
    route_id,
    direction_id,
    shape_id,
    segment_index,
    from_stop_id,
    to_stop_id,
    length_m,
    shape_status,
    trips,
    path_lon,
    path_lat
from {{ source('staged', 'gtfs_pattern_segments') }}
