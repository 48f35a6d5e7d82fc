{% macro get_where_subquery(relation) -%}
    {#- dbt's own macro, plus one placeholder: a data test whose `where` says __night__ checks only
        the rows of the service dates being (re)built, when its relation has a service_date column,
        or of their months in a monthly mart built incrementally (dbt_project.yml sets it for every
        data test; a test's own ``where`` config must keep it, e.g. "is_valid and __night__"). A
        first build or a full refresh (no dates) tests every row. Rows of other dates were tested the night they were built: a night's tests
        cost what the night brings, not the history. -#}
    {%- set where = config.get('where') -%}
    {%- if where and '__night__' in where -%}
        {%- set where = where | replace('__night__', night_dates_condition(relation)) -%}
    {%- endif -%}
    {%- if where and where != 'true' -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{% macro night_dates_condition(relation) -%}
    {%- set dates = var('service_dates', []) -%}
    {%- if not execute or not dates -%}
        {%- do return('true') -%}
    {%- endif -%}
    {%- set columns = adapter.get_columns_in_relation(relation) | map(attribute='name') | map('lower') | list -%}
    {%- if 'service_date' in columns -%}
        {%- set listed = [] -%}
        {%- for d in dates -%}{%- do listed.append("date '" ~ d ~ "'") -%}{%- endfor -%}
        {%- do return('service_date in (' ~ listed | join(', ') ~ ')') -%}
    {%- endif -%}
    {#- a monthly mart built incrementally rebuilds the months of the night's dates only: its other
        months were tested when they were built (a monthly table rebuilt whole is tested whole) -#}
    {%- set incremental = graph.nodes.values() | selectattr('resource_type', 'equalto', 'model')
        | selectattr('name', 'equalto', relation.identifier)
        | selectattr('config.materialized', 'equalto', 'incremental') | list -%}
    {%- if 'month' in columns and incremental -%}
        {%- set months = [] -%}
        {%- for d in dates | sort -%}
            {%- set m = "date '" ~ d[:7] ~ "-01'" -%}
            {%- if m not in months -%}{%- do months.append(m) -%}{%- endif -%}
        {%- endfor -%}
        {%- do return('month in (' ~ months | join(', ') ~ ')') -%}
    {%- endif -%}
    {%- do return('true') -%}
{%- endmacro %}
