{#- The located validations of each stop visit (duplicates of a tap left out), for the dates
    being built: the evidence of who boarded where. Read by int_stop_visit_boardings and
    int_counted_trips. One row per (service_date, trip_id, stop_position). -#}
{% macro validations_per_stop_visit() -%}
    select
        service_date,
        trip_id,
        board_position as stop_position,
        count(*) as validations
    from {{ ref('int_fare_transactions_located') }}
    where is_located and not is_duplicate and {{ service_date_filter() }}
    group by all
{%- endmacro %}
