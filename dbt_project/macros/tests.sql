{% test expression_is_true(model, expression, rows='true') %}
    {#- Fails on every row (of those ``rows`` selects) where the expression is false (or null).
        Not ``where``: dbt takes a test argument named so as the test's where config, which
        replaced the night's filter (__night__) and tested the whole history every night. -#}
    select * from {{ model }} where ({{ rows }}) and not coalesce(({{ expression }}), false)
{% endtest %}

{% test accepted_range(model, column_name, min_value=none, max_value=none) %}
    select * from {{ model }}
    where {{ column_name }} is not null and (
        false
        {% if min_value is not none %} or {{ column_name }} < {{ min_value }} {% endif %}
        {% if max_value is not none %} or {{ column_name }} > {{ max_value }} {% endif %}
    )
{% endtest %}

{% test unique_combination(model, columns) %}
    select {{ columns | join(', ') }}, count(*) as n
    from {{ model }}
    group by all
    having count(*) > 1
{% endtest %}
