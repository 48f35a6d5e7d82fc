-- Every validation is a boarding: per trip, the estimated boardings are never fewer than the
-- validations located on it (on APC trips the floor is the trip's, not each stop's: a validation
-- is placed on a stop with some error; int_stop_visit_boardings).
with per_trip as (
    select
        service_date,
        trip_id,
        sum(boardings_estimated) as boardings,
        sum(case when not is_last_stop then validations end) as validations
    from {{ ref('int_stop_visit_boardings') }}
    group by all
)

select * from per_trip
where boardings < validations - 1e-6
