{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- The network version in force on each service date that has data: the most recently
-- delivered GTFS whose validity covers the date, as known when the date is built (a night, or a
-- rebuild of its range; the marts of the date are built with it). Incremental: a night reads
-- the partitions of its own dates, not every staged day of the history (a table rebuilt each
-- night scanned the year's validations, AVL and trips to list their dates: issue #32).
with dates as (
    select distinct service_date from {{ ref('stg_avl__stop_visits') }}
    where {{ service_date_filter() }}
    union
    select distinct service_date from {{ ref('stg_ticketing__fare_transactions') }}
    where {{ service_date_filter() }}
    union
    select distinct service_date from {{ ref('stg_avl__trips_performed') }}
    where {{ service_date_filter() }}
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
{{ in_period_order('service_date') }}
