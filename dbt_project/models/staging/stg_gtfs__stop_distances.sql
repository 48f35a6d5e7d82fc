-- Where each stop time lies along its trip's shape (metres from the shape's start), as placed at
-- ingestion (ingestion/geometry.py); along_m is null when the shape could not be used.
select
    feed_version,
    trip_id,
    stop_sequence::integer as stop_sequence,
    stop_id,
    pattern_id,
    along_m,
    offset_m,
    shape_status
from {{ source('staged', 'gtfs_stop_distances') }}
