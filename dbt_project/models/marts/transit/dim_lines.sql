-- Lines (GTFS routes) of every network version. One row per (feed_version, route_id).
select
    feed_version,
    route_id,
    route_short_name,
    route_long_name,
    route_type,
    case route_type when 0 then 'tramway' when 1 then 'métro' when 2 then 'train' when 3 then 'bus' else 'autre' end
        as mode
from {{ ref('stg_gtfs__routes') }}
