{% macro local_ts(ts) -%}
    {#- A UTC instant as local wall-clock time of the agglomeration. -#}
    timezone('{{ var("timezone") }}', {{ ts }})
{%- endmacro %}

{% macro time_band(ts) -%}
    {#- The planning time band of an instant (local time); hours past midnight are "soirée/nuit". -#}
    case
        when hour({{ local_ts(ts) }}) < 5 then '00-05 nuit'
        when hour({{ local_ts(ts) }}) < 7 then '05-07 début de service'
        when hour({{ local_ts(ts) }}) < 9 then '07-09 pointe du matin'
        when hour({{ local_ts(ts) }}) < 12 then '09-12 matinée'
        when hour({{ local_ts(ts) }}) < 14 then '12-14 midi'
        when hour({{ local_ts(ts) }}) < 16 then '14-16 après-midi'
        when hour({{ local_ts(ts) }}) < 19 then '16-19 pointe du soir'
        when hour({{ local_ts(ts) }}) < 21 then '19-21 soirée'
        else '21-24 nuit'
    end
{%- endmacro %}

{% macro service_date_filter(column='service_date') -%}
    {#- Restrict an incremental run to the service dates being (re)computed; a first build or a
        full refresh (and a unit test) takes every date, unless it is the first batch of a
        backfill (var batch_dates_only: the tables start with that batch's dates, issue #32). -#}
    {%- set dates = var('service_dates', []) -%}
    {%- if (is_incremental() or var('batch_dates_only', false)) and dates and dates | length > 0 -%}
        {{ column }} in ({% for d in dates %}date '{{ d }}'{% if not loop.last %}, {% endif %}{% endfor %})
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{% macro month_filter(column='service_date') -%}
    {#- Restrict an incremental run to the months of the service dates being (re)computed: a
        monthly mart rebuilds a whole month from every day of it. Written as date ranges so that
        DuckDB skips the row groups of other months instead of scanning the whole history. -#}
    {%- set dates = var('service_dates', []) -%}
    {%- if (is_incremental() or var('batch_dates_only', false)) and dates and dates | length > 0 -%}
        {%- set months = [] -%}
        {%- for d in dates | sort -%}{%- if d[:7] not in months -%}{%- do months.append(d[:7]) -%}{%- endif -%}{%- endfor -%}
        ({% for m in months -%}
            {%- set y, mo = m[:4] | int, m[5:7] | int -%}
            {%- set nxt = (y ~ '-' ~ '%02d' | format(mo + 1)) if mo < 12 else ((y + 1) ~ '-01') -%}
            ({{ column }} >= date '{{ m }}-01' and {{ column }} < date '{{ nxt }}-01')
            {%- if not loop.last %} or {% endif -%}
        {%- endfor %})
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{% macro in_period_order(column='service_date') -%}
    {#- Rows in period order when a build writes several dates (a backfill, a full build): the
        table's row groups then follow the periods and a night's date filter skips the others.
        A night that writes one date needs no sort (at metro scale the sort of a whole day held
        400 MB more). -#}
    {%- set dates = var('service_dates', []) -%}
    {#- the night says how many dates it brings (a first build takes every staged date) -#}
    {%- if var('several_dates', not dates or dates | length > 1) %}
order by {{ column }}
    {%- endif -%}
{%- endmacro %}

{% macro analyze_after_a_large_build() -%}
    {#- ANALYZE the model just built when the build created it or wrote several dates (a first
        build, a backfill's batch, a full build): a table created in the process has no
        distinct-value statistics until analysed, and the next models' join orders depend on
        them (issue #32). Not on a night of one date: ANALYZE reads the whole table, a cost that
        grows with the history. Renders nothing otherwise (dbt skips an empty hook). -#}
    {%- set dates = var('service_dates', []) -%}
    {%- if var('first_build', false) or var('batch_dates_only', false)
        or var('several_dates', not dates or dates | length > 1) -%}
        analyze {{ this }}
    {%- endif -%}
{%- endmacro %}
