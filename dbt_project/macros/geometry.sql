{% macro wkb_line(lon_list, lat_list) -%}
    {#- A WKB linestring (WGS84, longitude first) from two lists of coordinates, as the published
        marts carry geometry: plain WKB, read as GEOMETRY by the analysts' catalog and GIS export. -#}
    st_aswkb(st_makeline(list_transform(range(1, len({{ lon_list }}) + 1), i -> st_point({{ lon_list }}[i], {{ lat_list }}[i]))))
{%- endmacro %}

{% macro wkb_point(lon, lat) -%}
    {#- null for a place that is none: missing, not finite (nan, inf) or off the globe -#}
    case
        when isfinite({{ lon }}) and isfinite({{ lat }}) and abs({{ lat }}) <= 90 and abs({{ lon }}) <= 180
            then st_aswkb(st_point({{ lon }}, {{ lat }}))
    end
{%- endmacro %}
