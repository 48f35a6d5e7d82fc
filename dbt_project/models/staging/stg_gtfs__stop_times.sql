-- GTFS times are "seconds after noon minus 12 h" of the service day and may pass 24:00:00.
with source as (
    select * from {{ source('staged', 'gtfs_stop_times') }}
),

typed as (
    select
        feed_version,
        trip_id,
        stop_id,
        cast(stop_sequence as integer) as stop_sequence,
        {% for col in ['arrival_time', 'departure_time'] %}
            case when nullif({{ col }}, '') is not null then
                    cast(split_part({{ col }}, ':', 1) as integer) * 3600
                    + cast(split_part({{ col }}, ':', 2) as integer) * 60
                    + cast(split_part({{ col }}, ':', 3) as integer)
            end as {{ col.replace('_time', '') }}_s{% if not loop.last %},{% endif %}
        {% endfor %}
    from source
)

select * from typed
