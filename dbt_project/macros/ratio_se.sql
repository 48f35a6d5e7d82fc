{#- The standard error of a ratio estimator sum(y) / sum(x), the groups' rows being the sampled
    units (Cochran 1977, 6.9): sqrt(sum (y - R x)^2 / (n (n - 1))) / mean(x). Used by the APC
    calibration (manual / APC counts) and the validation rate (validations / counted boardings),
    int_stop_visit_boardings. -#}
{% macro ratio_se(y, x) -%}
    sqrt(
        list_sum(list_transform(
            list({ 'x': {{ x }}, 'y': {{ y }} }),
            u -> (u.y - sum({{ y }})::double / nullif(sum({{ x }}), 0) * u.x) ^ 2
        ))
        / nullif(count(*) * (count(*) - 1), 0)
    ) / nullif(avg({{ x }}), 0)
{%- endmacro %}
