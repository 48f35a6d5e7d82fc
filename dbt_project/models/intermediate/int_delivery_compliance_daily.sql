-- For each operator's daily feed and each service date of the period with data: was the day
-- delivered, on time (before the contract deadline), and parsed? One row per (operator, feed,
-- service_date). Missing, late and unparsable deliveries are contract breaches a manager sees.
-- "On time" is judged at ingestion on a clock the operator does not set alone (the manifest's
-- judged_at / judged_on: S3's LastModified, a folder's inode change time, or when the city first
-- saw an SFTP file), never on the modification time the operator gives its file.
with deliveries as (
    select * from {{ ref('stg_manifest__deliveries') }}
    where duplicate_of is null
),

parsed as (
    select distinct sha256 from {{ ref('stg_manifest__steps') }}
    where step = 'parsed'
),

-- daily feeds are those whose contract sets a deadline per service date (D+N): registers and
-- networks are delivered when they change and are not expected every day
daily_feeds as (
    select distinct
        operator,
        feed
    from deliveries
    where deadline_at is not null
),

period as (
    select
        operator,
        min(declared_date) as first_date,
        max(declared_date) as last_date
    from deliveries
    where deadline_at is not null
    group by all
),

expected as (
    select
        daily_feeds.operator,
        daily_feeds.feed,
        calendar.service_date
    from daily_feeds
    inner join period using (operator)
    inner join {{ ref('int_calendar_days') }} as calendar
        on calendar.service_date between period.first_date and period.last_date
),

judged as (
    select
        expected.operator,
        expected.feed,
        expected.service_date,
        count(deliveries.sha256) as deliveries,
        count(parsed.sha256) as deliveries_parsed,
        bool_or(parsed.sha256 is not null and not coalesce(deliveries.is_late, false)) as is_on_time_and_parsed,
        min(deliveries.delivered_at) as first_delivered_at,
        string_agg(deliveries.sha256, ',' order by deliveries.sha256) as sha256s
    from expected
    left join deliveries
        on expected.operator = deliveries.operator
            and expected.feed = deliveries.feed
            and expected.service_date = deliveries.declared_date
    left join parsed on deliveries.sha256 = parsed.sha256
    group by all
)

select
    *,
    case
        when deliveries = 0 then 'missing'
        when deliveries_parsed = 0 then 'unusable'
        when coalesce(is_on_time_and_parsed, false) then 'on_time'
        else 'late'
    end as delivery_status
from judged
