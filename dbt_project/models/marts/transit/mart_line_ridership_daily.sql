{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- Ridership per line, day and fare product: validations as delivered (deduplicated, located or
-- not), every validation recorded (a card's second tap within duplicate_window_s included: what
-- an operator counts and declares) and boardings estimated (the line-day's estimated boardings shared out by product in
-- proportion to its validations). One row per (service_date, route_short_name, fare_product_id).
with validations as (
    select
        located.service_date,
        coalesce(located.route_short_name, tx.route_short_name) as route_short_name,
        located.fare_product_id,
        count(*) filter (where not located.is_duplicate) as validations,
        count(*) as validations_recorded,
        -- one type whatever the ticketing format (a vendor's decimal, TIDES's double): cents
        cast(coalesce(sum(tx.amount), 0) as decimal(18, 2)) as revenue_eur
    from {{ ref('int_fare_transactions_located') }} as located
    inner join {{ ref('stg_ticketing__fare_transactions') }} as tx using (service_date, source_sha256, source_row)
    where
        {{ service_date_filter('located.service_date') }}
        and {{ service_date_filter('tx.service_date') }}
    group by all
),

line_day as (
    select
        service_date,
        route_short_name,
        sum(boardings_estimated) as boardings_estimated
    from {{ ref('fct_stop_visit_loads') }}
    where {{ service_date_filter() }}
    group by all
),

final as (
    select
        validations.service_date,
        validations.route_short_name,
        validations.fare_product_id,
        validations.validations,
        validations.validations_recorded,
        validations.revenue_eur,
        line_day.boardings_estimated
        * validations.validations / nullif(sum(validations.validations) over (
            partition by validations.service_date, validations.route_short_name
        ), 0) as boardings_estimated
    from validations
    left join line_day using (service_date, route_short_name)
)

select * from final
{{ in_period_order('service_date') }}
