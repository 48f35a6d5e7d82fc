-- The network version in force on each service date that has data: the most recently
-- delivered GTFS whose validity covers the date.
with dates as (
    select distinct service_date from {{ ref('stg_avl__stop_visits') }}
    union
    select distinct service_date from {{ ref('stg_ticketing__fare_transactions') }}
    union
    select distinct service_date from {{ ref('stg_avl__trips_performed') }}
),

versions as (
    select * from {{ ref('stg_gtfs__feed_versions') }}
),

in_force as (
    select
        dates.service_date,
        versions.feed_version
    from dates
    inner join versions
        on dates.service_date between versions.valid_from and versions.valid_to
    qualify row_number() over (
            partition by dates.service_date order by versions.delivered_at desc, versions.feed_version desc
        ) = 1
)

select * from in_force
