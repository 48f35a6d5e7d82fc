{% macro parking_reading_intervals() -%}
    {#- One row per parking operator with its expected minutes between readings (var parking_reading_interval_min). -#}
    {% for op, minutes in var('parking_reading_interval_min').items() %}
    select '{{ op }}' as operator, {{ minutes }} as interval_min{% if not loop.last %} union all{% endif %}
    {% endfor %}
{%- endmacro %}
