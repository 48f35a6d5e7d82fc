-- Each line pattern's path (a line, a direction, a shape and its stops, per network version): the
-- GTFS shape from its first stop to its last, as its segments cut it (stop, foot on the shape,
-- the shape, ..., last stop), or the stop-to-stop polyline where the feed has no shape for it or
-- the shape was refused (length_source). One row per (feed_version, pattern_id).
with segments as (
    select * from {{ ref('stg_gtfs__pattern_segments') }}
),

lines as (
    select
        feed_version,
        route_id,
        route_short_name
    from {{ ref('dim_lines') }}
),

stops as (
    select
        feed_version,
        stop_id,
        stop_lat,
        stop_lon
    from {{ ref('stg_gtfs__stops') }}
),

measured as (
    select
        segments.*,
        coalesce(
            segments.length_m,
            {{ haversine_m('from_stop.stop_lat', 'from_stop.stop_lon', 'to_stop.stop_lat', 'to_stop.stop_lon') }}
            * {{ var('road_factor') }}
        ) as segment_m,
        -- each segment's path but its first point, which is the previous segment's last
        case when segments.segment_index = 1 then segments.path_lon else segments.path_lon[2:] end as lon_part,
        case when segments.segment_index = 1 then segments.path_lat else segments.path_lat[2:] end as lat_part
    from segments
    left join stops as from_stop
        on segments.feed_version = from_stop.feed_version and segments.from_stop_id = from_stop.stop_id
    left join stops as to_stop
        on segments.feed_version = to_stop.feed_version and segments.to_stop_id = to_stop.stop_id
),

patterns as (
    select
        feed_version,
        pattern_id,
        any_value(route_id) as route_id,
        any_value(direction_id) as direction_id,
        any_value(shape_id) as shape_id,
        any_value(shape_status) as shape_status,
        any_value(trips) as trips,
        count(*) + 1 as stops,
        arg_min(from_stop_id, segment_index) as first_stop_id,
        arg_max(to_stop_id, segment_index) as last_stop_id,
        sum(segment_m) as length_m,
        bool_and(length_m is not null) as is_along_shape,
        flatten(list(lon_part order by segment_index)) as path_lon,
        flatten(list(lat_part order by segment_index)) as path_lat
    from measured
    group by feed_version, pattern_id
),

final as (
    select
        patterns.feed_version,
        patterns.pattern_id,
        lines.route_short_name,
        patterns.route_id,
        patterns.direction_id,
        patterns.shape_id,
        patterns.shape_status,
        patterns.trips,
        patterns.stops,
        patterns.first_stop_id,
        patterns.last_stop_id,
        patterns.length_m,
        case when patterns.is_along_shape then 'shape' else 'straight_line_x_road_factor' end as length_source,
        {{ wkb_line('patterns.path_lon', 'patterns.path_lat') }} as geometry
    from patterns
    left join lines using (feed_version, route_id)
)

select * from final
