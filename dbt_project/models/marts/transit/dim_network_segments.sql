-- The network's segments between consecutive stops, per line and direction, with their path cut
-- from the GTFS shape (ingestion/geometry.py) and their length: along the shape, or the straight
-- line x road_factor where no shape fits (length_source). Where several patterns of a line share
-- a segment, the path of the pattern with the most trips is kept.
-- One row per (feed_version, route_short_name, direction_id, from_stop_id, to_stop_id).
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
        stop_name,
        stop_lat,
        stop_lon
    from {{ ref('stg_gtfs__stops') }}
),

chosen as (
    select
        lines.route_short_name,
        segments.*,
        sum(segments.trips) over same_segment as trips_total,
        count(*) over same_segment as patterns
    from segments
    inner join lines using (feed_version, route_id)
    window
        same_segment as (
            partition by
                segments.feed_version, lines.route_short_name, segments.direction_id,
                segments.from_stop_id, segments.to_stop_id
        )
    qualify row_number() over (
            partition by
                segments.feed_version, lines.route_short_name, segments.direction_id,
                segments.from_stop_id, segments.to_stop_id
            order by segments.trips desc, segments.pattern_id asc
        ) = 1
),

final as (
    select
        chosen.feed_version,
        chosen.route_short_name,
        chosen.direction_id,
        chosen.from_stop_id,
        chosen.to_stop_id,
        from_stop.stop_name as from_stop_name,
        to_stop.stop_name as to_stop_name,
        coalesce(
            chosen.length_m,
            {{ haversine_m('from_stop.stop_lat', 'from_stop.stop_lon', 'to_stop.stop_lat', 'to_stop.stop_lon') }}
            * {{ var('road_factor') }}
        ) as length_m,
        case when chosen.length_m is not null then 'shape' else 'straight_line_x_road_factor' end as length_source,
        chosen.shape_status,
        chosen.shape_id,
        chosen.pattern_id,
        chosen.patterns,
        chosen.trips_total as trips,
        {{ wkb_line('chosen.path_lon', 'chosen.path_lat') }} as geometry
    from chosen
    left join stops as from_stop
        on chosen.feed_version = from_stop.feed_version and chosen.from_stop_id = from_stop.stop_id
    left join stops as to_stop
        on chosen.feed_version = to_stop.feed_version and chosen.to_stop_id = to_stop.stop_id
)

select * from final
