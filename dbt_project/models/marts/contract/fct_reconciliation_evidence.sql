{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='service_date') }}

-- The facts behind the city's recomputation of a declared figure, one by one, each with the
-- operator's delivery (sha256) and row it comes from, so the city can send them to the operator:
-- * trip_reported_run_without_avl_trace (km_realises): a trip the trips feed reports run
--   (REALISEE, DEVIEE) whose stops AVL does not show served (fewer than trip_min_served_share);
-- * external_loss_uncorroborated (courses_perdues_externes): a trip lost for a cause the operator
--   classes external that the city's data does not corroborate (int_external_losses_checked);
-- * vehicle_immobilised_at_peak (disponibilite_parc): a vehicle with an immobilising work order
--   open at the peak check (peak_check_local), which the city counts unavailable (times local);
-- * departures_outside_window (ponctualite): a line's departures of a day outside the contract's
--   window (-punctuality_early_s / +punctuality_late_s), from that day's AVL deliveries.
-- One row per (operator, service_date, evidence_kind, subject).
with holders as (
    select distinct
        operator,
        figure_code
    from {{ ref('contract_declared_figures') }}
),

trips as (
    select
        holders.operator,
        trips.service_date,
        'km_realises' as figure_code,
        trips.route_short_name,
        'trip_reported_run_without_avl_trace' as evidence_kind,
        trips.trip_id as subject,
        trips.scheduled_km as quantity,
        'km' as unit,
        format(
            'course {} du {} déclarée {} : {} arrêt(s) desservi(s) sur {} dans le SAE',
            trips.trip_id, trips.service_date, trips.trip_status, trips.stops_served, trips.scheduled_stops
        ) as detail,
        trips.reported_sha256 as source_sha256,
        trips.reported_row as source_row
    from {{ ref('int_trips_delivered') }} as trips
    inner join holders on holders.figure_code = 'km_realises'
    where {{ service_date_filter('trips.service_date') }}
        and trips.trip_status in ('REALISEE', 'DEVIEE')
        and not trips.is_run
),

uncorroborated as (
    select
        holders.operator,
        checked.service_date,
        'courses_perdues_externes' as figure_code,
        checked.route_short_name,
        'external_loss_uncorroborated' as evidence_kind,
        checked.trip_id as subject,
        checked.scheduled_km as quantity,
        'km' as unit,
        format(
            'course {} du {} perdue, cause déclarée externe : {} autre(s) course(s) de la ligne {} dans l''heure, '
            || 'retard médian {} s contre {} s d''ordinaire ce jour-là',
            checked.trip_id, checked.service_date, checked.window_trips_run, checked.route_short_name,
            coalesce(round(checked.window_delay_s)::varchar, '—'), coalesce(round(checked.line_delay_s)::varchar, '—')
        ) as detail,
        checked.reported_sha256 as source_sha256,
        checked.reported_row as source_row
    from {{ ref('int_external_losses_checked') }} as checked
    inner join holders on holders.figure_code = 'courses_perdues_externes'
    where {{ service_date_filter('checked.service_date') }} and not checked.is_corroborated
),

peaks as (
    select
        service_date,
        timezone('{{ var("timezone") }}', (service_date::varchar || ' {{ var("peak_check_local") }}')::timestamp)
            as peak_at
    from {{ ref('mart_fleet_availability_daily') }}
    where {{ service_date_filter() }}
),

immobilised as (
    select
        holders.operator,
        peaks.service_date,
        'disponibilite_parc' as figure_code,
        null as route_short_name,
        'vehicle_immobilised_at_peak' as evidence_kind,
        orders.vehicle_id as subject,
        1.0 as quantity,
        'véhicule' as unit,
        format(
            'véhicule {} immobilisé à {} le {} : ordre de travail {} ({}) ouvert le {}{}',
            orders.vehicle_id, '{{ var("peak_check_local") }}', peaks.service_date, orders.work_order_id,
            orders.component, strftime(timezone('{{ var("timezone") }}', orders.opened_at), '%Y-%m-%d %H:%M'),
            coalesce(
                ', clôturé le ' || strftime(timezone('{{ var("timezone") }}', orders.closed_at), '%Y-%m-%d %H:%M'),
                ', non clôturé'
            )
        ) as detail,
        orders.source_sha256,
        orders.source_row
    from peaks
    inner join {{ ref('stg_maintenance__work_orders') }} as orders
        on orders.is_immobilising
            and peaks.peak_at >= orders.opened_at
            and (orders.closed_at is null or peaks.peak_at < orders.closed_at)
    inner join holders on holders.figure_code = 'disponibilite_parc'
    -- one row per vehicle and day: its earliest open order
    qualify
        row_number() over (
            partition by peaks.service_date, orders.vehicle_id order by orders.opened_at, orders.work_order_id
        ) = 1
),

avl_files as (
    select
        declared_date as service_date,
        string_agg(sha256, ',' order by sha256) as sha256s
    from {{ ref('stg_manifest__deliveries') }}
    where feed = 'avl' and duplicate_of is null and {{ service_date_filter('declared_date') }}
    group by all
),

outside_window as (
    select
        service_date,
        route_short_name,
        round(sum(departures_observed * (1 - punctuality_all_stops)))::bigint as outside,
        sum(departures_observed) as observed
    from {{ ref('mart_punctuality') }}
    where {{ service_date_filter() }}
    group by all
),

departures as (
    select
        holders.operator,
        outside_window.service_date,
        'ponctualite' as figure_code,
        outside_window.route_short_name,
        'departures_outside_window' as evidence_kind,
        outside_window.route_short_name as subject,
        outside_window.outside::double as quantity,
        'départs' as unit,
        format(
            'ligne {} le {} : {} départ(s) hors de la fenêtre -{} s / +{} s sur {} observé(s)',
            outside_window.route_short_name, outside_window.service_date, outside_window.outside,
            {{ var('punctuality_early_s') }}, {{ var('punctuality_late_s') }}, outside_window.observed
        ) as detail,
        avl_files.sha256s as source_sha256,
        null::bigint as source_row
    from outside_window
    inner join holders on holders.figure_code = 'ponctualite'
    left join avl_files on outside_window.service_date = avl_files.service_date
    where outside_window.outside > 0
),

unioned as (
    select * from trips
    union all by name
    select * from uncorroborated
    union all by name
    select * from immobilised
    union all by name
    select * from departures
)

select
    operator,
    date_trunc('month', service_date)::date as month,
    service_date,
    figure_code,
    route_short_name,
    evidence_kind,
    subject,
    quantity,
    unit,
    detail,
    source_sha256,
    source_row
from unioned
{{ in_period_order('service_date') }}
