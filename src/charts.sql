-- charts.sql: inline SVG charts for the HTML reports (validation, world and
-- live reports; docs/reports.md, "Charts").
--
-- Every chart is one self-contained <figure> with an <svg> inside: no script,
-- no style sheet, no external reference. The output is deterministic (the
-- same input gives the same bytes): coordinates are rounded to one decimal,
-- axis labels to the precision of the tick step, and every text that reaches
-- the SVG (titles, labels, reference-line captions) goes through wval._html.
-- Values that are not finite (NaN, +-Infinity) are left out of a chart.
--
-- requires: wval

-- wval._chart_ticks(lo, hi, n): about n "nice" tick values (steps of 1, 2,
-- 2.5 or 5 times a power of ten) covering [lo, hi].
CREATE FUNCTION wval._chart_ticks(lo float8, hi float8, n integer DEFAULT 5) RETURNS float8[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    raw float8;
    mag float8;
    step float8;
    t float8;
    out float8[] := '{}';
BEGIN
    IF lo IS NULL OR hi IS NULL OR NOT (hi > lo) OR n < 2 THEN
        RETURN ARRAY[lo];
    END IF;
    raw := (hi - lo) / (n - 1);
    mag := power(10::float8, floor(log(raw)));
    step := mag * CASE WHEN raw / mag <= 1 THEN 1 WHEN raw / mag <= 2 THEN 2
                       WHEN raw / mag <= 2.5 THEN 2.5 WHEN raw / mag <= 5 THEN 5 ELSE 10 END;
    t := ceil(lo / step - 1e-9) * step;
    WHILE t <= hi + step * 1e-9 AND cardinality(out) < 20 LOOP
        out := out || (round((t / step)::numeric) * step::numeric)::float8;
        t := t + step;
    END LOOP;
    RETURN out;
END
$$;
COMMENT ON FUNCTION wval._chart_ticks(float8, float8, integer) IS 'about n round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) covering [lo, hi], for chart axes';

-- wval._chart_num(v, step): v with as many decimals as the tick step needs
-- (fixed precision, no exponent, no "-0").
CREATE FUNCTION wval._chart_num(v float8, step float8) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN v IS NULL OR v IN ('NaN', 'Infinity', '-Infinity') THEN 'n/a'
                ELSE regexp_replace(
                         round(v::numeric, least(8, greatest(0, CASE WHEN step IS NULL OR step <= 0 OR step = 'NaN'
                                                                     THEN 4
                                                                     ELSE ceil(-log(step::numeric) - 1e-9)::integer +
                                                                          CASE WHEN round((step / power(10::float8, floor(log(step::numeric))::float8))::numeric, 6)
                                                                                    = 2.5 THEN 1 ELSE 0 END END)))::text,
                         '^-(0(\.0*)?)$', '\1') END
$$;
COMMENT ON FUNCTION wval._chart_num(float8, float8) IS 'formats an axis or mark value with the fixed number of decimals its tick step needs';

-- wval._chart_c(x): an SVG coordinate with one decimal
CREATE FUNCTION wval._chart_c(x float8) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT regexp_replace(round(x::numeric, 1)::text, '^-(0(\.0*)?)$', '\1')
$$;
COMMENT ON FUNCTION wval._chart_c(float8) IS 'an SVG coordinate rounded to one decimal';

-- wval._chart_open(id, title, w, h): the figure and svg opening with a white
-- background and the escaped title (id: chart-<id>, [a-z0-9-] only).
CREATE FUNCTION wval._chart_open(id text, title text, w integer, h integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT format('<figure class="wval-chart" id="chart-%1$s"><svg xmlns="http://www.w3.org/2000/svg" width="%2$s" height="%3$s" '
                  'viewBox="0 0 %2$s %3$s" role="img" aria-label="%4$s" font-family="sans-serif">'
                  '<rect x="0" y="0" width="%2$s" height="%3$s" fill="#fff"/>'
                  '<text x="8" y="16" font-size="13" font-weight="bold">%4$s</text>',
                  regexp_replace(lower(coalesce(id, 'chart')), '[^a-z0-9-]', '-', 'g'), w, h, wval._html(title))
$$;
COMMENT ON FUNCTION wval._chart_open(text, text, integer, integer) IS 'the opening of a chart: figure with id chart-<id>, svg element, background and escaped title';

-- wval._chart_yaxis(lo, hi, y0, y1, x0, x1): horizontal grid lines and labels
-- at the ticks of [lo, hi], mapped onto pixel rows y0 (hi) .. y1 (lo), then
-- the two axes: x = x0 from y0 to y1, y = y1 from x0 to x1.
CREATE FUNCTION wval._chart_yaxis(lo float8, hi float8, y0 float8, y1 float8, x0 float8, x1 float8) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH t AS (SELECT wval._chart_ticks(lo, hi, 5) AS ticks),
         s AS (SELECT ticks, CASE WHEN cardinality(ticks) > 1 THEN ticks[2] - ticks[1] END AS step FROM t)
    SELECT coalesce(string_agg(format('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#e4e4e4"/>'
                                      '<text x="%s" y="%s" font-size="11" text-anchor="end">%s</text>',
                                      wval._chart_c(x0), wval._chart_c(y), wval._chart_c(x1), wval._chart_c(y),
                                      wval._chart_c(x0 - 4), wval._chart_c(y + 4), wval._chart_num(v, s.step)), '' ORDER BY v), '')
           || format('<line x1="%1$s" y1="%2$s" x2="%1$s" y2="%3$s" stroke="#999"/><line x1="%1$s" y1="%3$s" x2="%4$s" y2="%3$s" stroke="#999"/>',
                     x0, y0, y1, x1)
    FROM s, unnest(s.ticks) v, LATERAL (SELECT y1 - (v - lo) / (hi - lo) * (y1 - y0) AS y) p
    WHERE v BETWEEN lo AND hi
$$;
COMMENT ON FUNCTION wval._chart_yaxis(float8, float8, float8, float8, float8, float8) IS 'grid lines and labels of a chart''s value axis at round ticks, and the two axes';

-- wval._chart_finite(vals): the finite values of an array, in order
CREATE FUNCTION wval._chart_finite(vals float8[]) RETURNS float8[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(v ORDER BY i), '{}')
    FROM unnest(vals) WITH ORDINALITY u(v, i)
    WHERE v IS NOT NULL AND v NOT IN ('NaN', 'Infinity', '-Infinity')
$$;
COMMENT ON FUNCTION wval._chart_finite(float8[]) IS 'the finite values of an array in their order (NaN, infinities and nulls left out)';

-- wval._chart_line(id, title, labels, vals, refs, color, fill): a line chart of
-- vals (one point per element; labels names the points on the x axis, five of
-- them shown), with horizontal reference lines refs = [{"y": number, "label":
-- text, "color": text}, ...] (the value range always includes them). fill
-- shades the area between the line and zero (a drawdown chart). Fewer than two
-- finite values give a note instead of a chart.
CREATE FUNCTION wval._chart_line(id text, title text, labels text[], vals float8[], refs jsonb DEFAULT '[]',
                                 color text DEFAULT '#1f5fa8', fill boolean DEFAULT false) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    w constant integer := 680;
    h constant integer := 220;
    l constant integer := 64;
    t constant integer := 28;
    b constant integer := 34;
    rgt constant integer := 110;
    pts float8[];
    idx integer[];
    n integer;
    lo float8;
    hi float8;
    pad float8;
    line text;
    xs text := '';
    rs text := '';
    r jsonb;
    k integer;
    i integer;
    y float8;
    ly float8;
    used float8[] := '{}';
BEGIN
    SELECT coalesce(array_agg(v ORDER BY o), '{}'), coalesce(array_agg(o::integer ORDER BY o), '{}') INTO pts, idx
    FROM unnest(vals) WITH ORDINALITY u(v, o)
    WHERE v IS NOT NULL AND v NOT IN ('NaN', 'Infinity', '-Infinity');
    n := cardinality(pts);
    IF n < 2 THEN
        RETURN format('<p class="wval-chart-missing" id="chart-%s">%s: not enough data for a chart</p>',
                      regexp_replace(lower(coalesce(id, 'chart')), '[^a-z0-9-]', '-', 'g'), wval._html(title));
    END IF;
    IF jsonb_typeof(refs) <> 'array' THEN
        refs := '[]';
    END IF;
    SELECT least(min(v), min(rv)), greatest(max(v), max(rv)) INTO lo, hi
    FROM unnest(pts) v,
         LATERAL (SELECT min((e->>'y')::float8) AS rv FROM jsonb_array_elements(refs) e
                  WHERE jsonb_typeof(e->'y') = 'number') q;
    IF fill THEN
        lo := least(lo, 0);
        hi := greatest(hi, 0);
    END IF;
    SELECT greatest(hi, max((e->>'y')::float8)) INTO hi FROM jsonb_array_elements(refs) e WHERE jsonb_typeof(e->'y') = 'number';
    pad := CASE WHEN hi > lo THEN (hi - lo) * 0.05 ELSE greatest(abs(lo) * 0.05, 0.01) END;
    lo := lo - CASE WHEN fill AND lo = 0 THEN 0 ELSE pad END;
    hi := hi + CASE WHEN fill AND hi = 0 THEN 0 ELSE pad END;
    IF NOT (hi > lo) THEN
        -- a flat series (e.g. no drawdown at all): a range around it
        lo := lo - greatest(abs(lo) * 0.05, 0.01);
        hi := hi + CASE WHEN fill AND hi = 0 THEN 0 ELSE greatest(abs(hi) * 0.05, 0.01) END;
    END IF;

    SELECT string_agg(wval._chart_c(l + (j - 1) * (w - l - rgt)::float8 / (n - 1)) || ',' ||
                      wval._chart_c(t + (hi - v) / (hi - lo) * (h - t - b)), ' ' ORDER BY j)
      INTO line
    FROM unnest(pts) WITH ORDINALITY u(v, j);

    -- x axis: five labelled ticks at evenly spaced points
    FOR k IN 0 .. 4 LOOP
        i := 1 + round(k * (n - 1) / 4.0)::integer;
        xs := xs || format('<line x1="%1$s" y1="%2$s" x2="%1$s" y2="%3$s" stroke="#999"/>'
                           '<text x="%1$s" y="%4$s" font-size="11" text-anchor="middle">%5$s</text>',
                           wval._chart_c(l + (i - 1) * (w - l - rgt)::float8 / (n - 1)), h - b, h - b + 4, h - b + 16,
                           wval._html(coalesce(labels[idx[i]], idx[i]::text)));
        EXIT WHEN n < 5 AND k >= n - 1;
    END LOOP;

    -- reference lines, dashed, captioned at the right (a caption that would
    -- overlap an earlier one moves down a line)
    FOR r IN SELECT e FROM jsonb_array_elements(refs) e WHERE jsonb_typeof(e->'y') = 'number' LOOP
        y := t + (hi - (r->>'y')::float8) / (hi - lo) * (h - t - b);
        ly := y + 4;
        WHILE EXISTS (SELECT 1 FROM unnest(used) u WHERE abs(u - ly) < 12) LOOP
            ly := ly + 12;
        END LOOP;
        used := used || ly;
        rs := rs || format('<line class="ref" x1="%1$s" y1="%2$s" x2="%3$s" y2="%2$s" stroke="%4$s" stroke-dasharray="5,3"/>'
                           '<text x="%5$s" y="%6$s" font-size="11" fill="%4$s">%7$s</text>',
                           l, wval._chart_c(y), w - rgt, wval._html(coalesce(r->>'color', '#666')),
                           w - rgt + 4, wval._chart_c(ly),
                           wval._html(coalesce(r->>'label', '') || ' ' || wval._fmt(r->'y')));
    END LOOP;

    RETURN wval._chart_open(id, title, w, h)
        || wval._chart_yaxis(lo, hi, t, h - b, l, w - rgt)
        || xs
        || CASE WHEN fill THEN format('<polygon fill="%s" fill-opacity="0.25" stroke="none" points="%s,%s %s %s,%s"/>',
                                      wval._html(color), l, wval._chart_c(t + hi / (hi - lo) * (h - t - b)), line,
                                      w - rgt, wval._chart_c(t + hi / (hi - lo) * (h - t - b)))
                ELSE '' END
        || format('<polyline class="series" fill="none" stroke="%s" stroke-width="1.5" points="%s"/>', wval._html(color), line)
        || rs
        || '</svg></figure>';
END
$$;
COMMENT ON FUNCTION wval._chart_line(text, text, text[], float8[], jsonb, text, boolean) IS 'an inline SVG line chart (area chart with fill) with round axis ticks, five x labels and dashed horizontal reference lines [{"y","label","color"}]; escaped, deterministic';

-- wval._chart_hist(id, title, vals, marks, bins): a histogram of vals with
-- vertical marks = [{"x": number, "label": text, "color": text}, ...] (the
-- range always includes them). bins defaults to ceil(sqrt(n)) within 5 .. 30.
CREATE FUNCTION wval._chart_hist(id text, title text, vals float8[], marks jsonb DEFAULT '[]', bins integer DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    w constant integer := 680;
    h constant integer := 220;
    l constant integer := 64;
    t constant integer := 28;
    b constant integer := 34;
    rgt constant integer := 110;
    pts float8[] := wval._chart_finite(vals);
    n integer;
    lo float8;
    hi float8;
    bw float8;
    counts integer[];
    top integer;
    bars text := '';
    xs text := '';
    ms text := '';
    ticks float8[];
    m jsonb;
    x float8;
    k integer;
BEGIN
    n := cardinality(pts);
    IF n < 2 THEN
        RETURN format('<p class="wval-chart-missing" id="chart-%s">%s: not enough data for a chart</p>',
                      regexp_replace(lower(coalesce(id, 'chart')), '[^a-z0-9-]', '-', 'g'), wval._html(title));
    END IF;
    IF jsonb_typeof(marks) <> 'array' THEN
        marks := '[]';
    END IF;
    bins := coalesce(bins, least(30, greatest(5, ceil(sqrt(n))::integer)));
    bins := least(greatest(bins, 1), 200);
    SELECT min(v), max(v) INTO lo, hi FROM unnest(pts) v;
    SELECT least(lo, min((e->>'x')::float8)), greatest(hi, max((e->>'x')::float8)) INTO lo, hi
    FROM jsonb_array_elements(marks) e WHERE jsonb_typeof(e->'x') = 'number';
    IF NOT (hi > lo) THEN
        lo := lo - greatest(abs(lo) * 0.05, 1e-6);
        hi := hi + greatest(abs(hi) * 0.05, 1e-6);
    END IF;
    bw := (hi - lo) / bins;
    SELECT array_agg(coalesce(c, 0) ORDER BY g) INTO counts
    FROM generate_series(1, bins) g
    LEFT JOIN (SELECT least(bins, 1 + floor((v - lo) / bw)::integer) AS bin, count(*)::integer AS c
               FROM unnest(pts) v GROUP BY 1) q ON q.bin = g;
    top := (SELECT max(c) FROM unnest(counts) c);

    FOR k IN 1 .. bins LOOP
        IF counts[k] > 0 THEN
            bars := bars || format('<rect class="bar" x="%s" y="%s" width="%s" height="%s" fill="#1f5fa8" fill-opacity="0.7"/>',
                                   wval._chart_c(l + (k - 1) * (w - l - rgt)::float8 / bins + 0.5),
                                   wval._chart_c(h - b - counts[k]::float8 / top * (h - t - b)),
                                   wval._chart_c(greatest((w - l - rgt)::float8 / bins - 1, 0.5)),
                                   wval._chart_c(counts[k]::float8 / top * (h - t - b)));
        END IF;
    END LOOP;

    -- x axis: round ticks of the value range
    ticks := wval._chart_ticks(lo, hi, 6);
    SELECT coalesce(string_agg(format('<line x1="%1$s" y1="%2$s" x2="%1$s" y2="%3$s" stroke="#999"/>'
                                      '<text x="%1$s" y="%4$s" font-size="11" text-anchor="middle">%5$s</text>',
                                      wval._chart_c(l + (v - lo) / (hi - lo) * (w - l - rgt)), h - b, h - b + 4, h - b + 16,
                                      wval._chart_num(v, CASE WHEN cardinality(ticks) > 1 THEN ticks[2] - ticks[1] END)),
                               '' ORDER BY v), '')
      INTO xs
    FROM unnest(ticks) v WHERE v BETWEEN lo AND hi;

    -- vertical marks, dashed, captioned at the top, one caption row each
    k := 0;
    FOR m IN SELECT e FROM jsonb_array_elements(marks) e WHERE jsonb_typeof(e->'x') = 'number' LOOP
        x := l + ((m->>'x')::float8 - lo) / (hi - lo) * (w - l - rgt);
        ms := ms || format('<line class="mark" x1="%1$s" y1="%2$s" x2="%1$s" y2="%3$s" stroke="%4$s" stroke-dasharray="5,3"/>'
                           '<text x="%5$s" y="%6$s" font-size="11" fill="%4$s">%7$s</text>',
                           wval._chart_c(x), t, h - b, wval._html(coalesce(m->>'color', '#b00020')),
                           w - rgt + 4, t + 12 + 14 * k,
                           wval._html(coalesce(m->>'label', '') || ' ' || wval._fmt(m->'x')));
        k := k + 1;
    END LOOP;

    RETURN wval._chart_open(id, title, w, h)
        || wval._chart_yaxis(0, top, t, h - b, l, w - rgt)
        || bars || xs || ms
        || '</svg></figure>';
END
$$;
COMMENT ON FUNCTION wval._chart_hist(text, text, float8[], jsonb, integer) IS 'an inline SVG histogram with round axis ticks and dashed vertical marks [{"x","label","color"}]; escaped, deterministic';

-- wval._chart_bars(id, title, labels, series, names, colors): stacked bars,
-- one bar per label, series[i][j] the height of series i in bar j (a 2-D
-- array), with a legend of the series names; the world report's status mix.
CREATE FUNCTION wval._chart_bars(id text, title text, labels text[], series float8[], names text[], colors text[])
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    w constant integer := 680;
    h constant integer := 220;
    l constant integer := 64;
    t constant integer := 28;
    b constant integer := 34;
    rgt constant integer := 110;
    nb integer := coalesce(cardinality(labels), 0);
    ns integer := coalesce(array_length(series, 1), 0);
    top float8 := 0;
    acc float8;
    v float8;
    bw float8;
    out text := '';
    i integer;
    j integer;
BEGIN
    IF nb < 1 OR ns < 1 OR array_ndims(series) <> 2 OR array_length(series, 2) <> nb THEN
        RETURN format('<p class="wval-chart-missing" id="chart-%s">%s: not enough data for a chart</p>',
                      regexp_replace(lower(coalesce(id, 'chart')), '[^a-z0-9-]', '-', 'g'), wval._html(title));
    END IF;
    FOR j IN 1 .. nb LOOP
        acc := 0;
        FOR i IN 1 .. ns LOOP
            acc := acc + coalesce(series[i][j], 0);
        END LOOP;
        top := greatest(top, acc);
    END LOOP;
    IF top <= 0 THEN
        top := 1;
    END IF;
    bw := (w - l - rgt)::float8 / nb;
    FOR j IN 1 .. nb LOOP
        acc := 0;
        FOR i IN 1 .. ns LOOP
            v := greatest(coalesce(series[i][j], 0), 0);
            IF v > 0 THEN
                out := out || format('<rect class="bar" x="%s" y="%s" width="%s" height="%s" fill="%s"/>',
                                     wval._chart_c(l + (j - 1) * bw + bw * 0.15), wval._chart_c(h - b - (acc + v) / top * (h - t - b)),
                                     wval._chart_c(bw * 0.7), wval._chart_c(v / top * (h - t - b)), wval._html(colors[i]));
            END IF;
            acc := acc + v;
        END LOOP;
        IF nb <= 6 OR (j - 1) % ceil(nb / 6.0)::integer = 0 THEN
            out := out || format('<text x="%s" y="%s" font-size="11" text-anchor="middle">%s</text>',
                                 wval._chart_c(l + (j - 0.5) * bw), h - b + 16, wval._html(labels[j]));
        END IF;
    END LOOP;
    FOR i IN 1 .. ns LOOP
        out := out || format('<rect x="%s" y="%s" width="10" height="10" fill="%s"/><text x="%s" y="%s" font-size="11">%s</text>',
                             w - rgt + 8, t + (i - 1) * 16, wval._html(colors[i]), w - rgt + 22, t + (i - 1) * 16 + 9,
                             wval._html(names[i]));
    END LOOP;
    RETURN wval._chart_open(id, title, w, h)
        || wval._chart_yaxis(0, top, t, h - b, l, w - rgt)
        || out || '</svg></figure>';
END
$$;
COMMENT ON FUNCTION wval._chart_bars(text, text, text[], float8[], text[], text[]) IS 'an inline SVG stacked bar chart (series x bars, a 2-D array) with a legend; escaped, deterministic';
