-- The calendar of service dates with the planner's day type, as analysts join it to the facts.
-- One row per date (built in int_calendar_days, which other models read).
select * from {{ ref('int_calendar_days') }}
