-- Every date from the first to the last service date with data (at least one year from the
-- first), with the planner's day type: the city's public holidays (var holiday_calendar:
-- metropolitan France, Alsace-Moselle, an overseas department) count as Sundays; school
-- holidays are those of the city's zone (var school_zone). One row per date.
with bounds as (
    select
        min(service_date) as first_date,
        greatest(max(service_date), min(service_date) + interval 365 day) as last_date
    from {{ ref('int_gtfs_version_by_date') }}
),

dates as (
    select cast(range as date) as service_date
    from bounds, range(bounds.first_date, bounds.last_date + interval 1 day, interval 1 day)
),

public_holidays as (
    select
        cast(holiday_date as date) as holiday_date,
        holiday_name
    from {{ ref('fr_public_holidays') }}
    where calendar = '{{ var("holiday_calendar") }}'
),

school_holidays as (
    select
        cast(holiday_date as date) as holiday_date,
        holiday_name
    from {{ ref('fr_school_holidays') }}
    where zone = '{{ var("school_zone") }}'
),

final as (
    select
        dates.service_date,
        isodow(dates.service_date) as iso_weekday,
        strftime(dates.service_date, '%A') as weekday_name,
        public_holidays.holiday_name as public_holiday_name,
        public_holidays.holiday_date is not null as is_public_holiday,
        school_holidays.holiday_name as school_holiday_name,
        school_holidays.holiday_date is not null as is_school_holiday,
        case
            when public_holidays.holiday_date is not null or isodow(dates.service_date) = 7 then 'sunday_holiday'
            when isodow(dates.service_date) = 6 then 'saturday'
            when school_holidays.holiday_date is not null then 'weekday_school_holiday'
            else 'weekday'
        end as day_type,
        cast(date_trunc('month', dates.service_date) as date) as month
    from dates
    left join public_holidays on dates.service_date = public_holidays.holiday_date
    left join school_holidays on dates.service_date = school_holidays.holiday_date
)

select * from final
