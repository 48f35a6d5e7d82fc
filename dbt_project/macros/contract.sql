{% macro kpi_amount_uncapped_eur(value, direction='direction', minimum='minimum', target='target',
                                  bonus='bonus_per_point_eur', penalty='penalty_per_point_eur') -%}
    {#- The contract's bonus (+) or penalty (-) for a KPI value, before the monthly cap:
        (value - target) x 100 points x bonus per point at or beyond the target; (minimum - value)
        x 100 x penalty per point short of the minimum; nothing in between (mart_contract_kpis,
        and the euro effect of a declared figure in mart_contract_reconciliation). -#}
    case
        when {{ value }} is null then 0.0
        when {{ direction }} = 'higher_better' and {{ value }} >= {{ target }}
            then ({{ value }} - {{ target }}) * 100 * {{ bonus }}
        when {{ direction }} = 'higher_better' and {{ value }} < {{ minimum }}
            then -({{ minimum }} - {{ value }}) * 100 * {{ penalty }}
        when {{ direction }} = 'lower_better' and {{ value }} <= {{ target }}
            then ({{ target }} - {{ value }}) * 100 * {{ bonus }}
        when {{ direction }} = 'lower_better' and {{ value }} > {{ minimum }}
            then -({{ value }} - {{ minimum }}) * 100 * {{ penalty }}
        else 0.0
    end
{%- endmacro %}

{% macro capped_eur(amount, cap='cap_eur') -%}
    round(sign({{ amount }}) * least(abs({{ amount }}), {{ cap }}), 2)
{%- endmacro %}
