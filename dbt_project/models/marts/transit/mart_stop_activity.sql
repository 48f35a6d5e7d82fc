{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Boardings and alightings per stop and hour (local). One row per (service_date, stop_id, hour).
with loads as (
    select * from {{ ref('fct_stop_visit_loads') }}
    where {{ service_date_filter() }}
),

hourly as (
    select
        service_date,
        stop_id,
        any_value(stop_name) as stop_name,
        hour({{ local_ts('actual_departure_at') }}) as hour,
        sum(validations) as validations,
        sum(boardings_estimated) as boardings_estimated,
        sum(alightings_estimated) as alightings_estimated,
        count(*) as stop_visits
    from loads
    group by all
)

select * from hourly
{{ in_period_order('service_date') }}
