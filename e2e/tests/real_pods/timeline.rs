//! The rehearsal's timeline as a picture: the crowd (waiting-room depth per sale, fans admitted) above,
//! the service's replicas (desired, Ready, each sale's wish) below, injected faults shaded across
//! both, on one time axis in run seconds. Pure: samples in, SVG text out.

use plotters::prelude::*;

/// One line of the picture.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

#[derive(Default)]
pub struct Timeline {
    /// Counts of people: queue depths, admissions.
    pub crowd: Vec<Series>,
    /// Replica counts.
    pub replicas: Vec<Series>,
    /// (from, to) run seconds of each injected fault; an open one ends at the last sample.
    pub faults: Vec<(f64, f64)>,
}

const COLOURS: [RGBColor; 5] = [BLUE, RED, GREEN, MAGENTA, CYAN];
const FAULT: RGBColor = RGBColor(255, 200, 120);

impl Timeline {
    fn end(&self) -> f64 {
        self.crowd
            .iter()
            .chain(&self.replicas)
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .fold(1.0, f64::max)
    }

    /// The picture, 960 × 560, as SVG text.
    pub fn svg(&self) -> Result<String, String> {
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, (960, 560)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| e.to_string())?;
            let (top, bottom) = root.split_vertically(300);
            let end = self.end();
            panel(&top, "the crowd", "people", &self.crowd, &self.faults, end)?;
            panel(
                &bottom,
                "the service",
                "replicas",
                &self.replicas,
                &self.faults,
                end,
            )?;
            root.present().map_err(|e| e.to_string())?;
        }
        Ok(out)
    }
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    unit: &str,
    series: &[Series],
    faults: &[(f64, f64)],
    end: f64,
) -> Result<(), String> {
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(48)
        .build_cartesian_2d(0.0..end, 0.0..top)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("run seconds")
        .y_desc(unit)
        // whole people and replicas: a small count gets one tick per unit
        .y_labels(top.ceil().min(10.0) as usize + 1)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(
            faults.iter().map(|&(from, to)| {
                Rectangle::new([(from, 0.0), (to, top)], FAULT.mix(0.5).filled())
            }),
        )
        .map_err(|e| e.to_string())?
        .label("injected fault")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], FAULT.filled()));
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, points: &[(f64, f64)]) -> Series {
        Series {
            name: name.into(),
            points: points.to_vec(),
        }
    }

    /// The points of every data line (2 px wide: the axes and ticks are 1 px), legend marks included.
    fn polylines(svg: &str) -> Vec<Vec<(f64, f64)>> {
        svg.split("<polyline")
            .skip(1)
            .filter(|p| p.contains("stroke-width=\"2\""))
            .filter_map(|p| p.split("points=\"").nth(1)?.split('"').next())
            .map(|pts| {
                pts.split_whitespace()
                    .filter_map(|xy| {
                        let (x, y) = xy.split_once(',')?;
                        Some((x.parse().ok()?, y.parse().ok()?))
                    })
                    .collect()
            })
            .collect()
    }

    /// (left, right) pixels of every shaded fault band (the legend's mark is opaque).
    fn bands(svg: &str) -> Vec<(f64, f64)> {
        let attr = |rect: &str, name: &str| -> f64 {
            let value = rect.split(&format!(" {name}=\"")).nth(1).unwrap();
            value.split('"').next().unwrap().parse().unwrap()
        };
        svg.split("<rect")
            .filter(|r| r.contains("fill=\"#FFC878\"") && r.contains("opacity=\"0.5\""))
            .map(|r| (attr(r, "x"), attr(r, "x") + attr(r, "width")))
            .collect()
    }

    #[test]
    fn timeline_draws_every_series_with_its_name_and_the_faults_across_both_panels() {
        let t = Timeline {
            crowd: vec![
                series("queue A", &[(0.0, 0.0), (10.0, 800.0), (20.0, 100.0)]),
                series("admitted", &[(0.0, 0.0), (20.0, 700.0)]),
            ],
            replicas: vec![series("desired", &[(0.0, 2.0), (10.0, 4.0), (20.0, 4.0)])],
            faults: vec![(12.0, 15.0)],
        };
        let svg = t.svg().unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for name in [
            "queue A",
            "admitted",
            "desired",
            "injected fault",
            "the crowd",
            "the service",
        ] {
            assert!(svg.contains(name), "{name} missing");
        }
        let lines = polylines(&svg);
        // one polyline per series with a point per sample (the legend's marks are paths)
        let lengths: Vec<usize> = lines.iter().map(Vec::len).collect();
        assert!(lengths.contains(&3) && lengths.contains(&2), "{lengths:?}");
        // the queue rises then falls: a smaller y pixel is higher on the page
        let queue = lines.iter().find(|l| l.len() == 3).unwrap();
        assert!(
            queue[1].1 < queue[0].1 && queue[1].1 < queue[2].1,
            "{queue:?}"
        );
        // the fault is shaded in both panels, between the samples at 10 s and 20 s
        let bands = bands(&svg);
        assert_eq!(bands.len(), 2, "{bands:?}");
        assert!(
            bands
                .iter()
                .all(|&(from, to)| queue[1].0 < from && to < queue[2].0),
            "{bands:?}"
        );
    }

    #[test]
    fn timeline_of_an_open_fault_shades_until_the_last_sample() {
        let t = Timeline {
            replicas: vec![series("desired", &[(0.0, 1.0), (30.0, 3.0)])],
            faults: vec![(20.0, f64::INFINITY)],
            ..Timeline::default()
        };
        let svg = t.svg().unwrap();
        let last_x = polylines(&svg)[0].last().unwrap().0;
        let bands = bands(&svg);
        assert_eq!(bands.len(), 2, "one band per panel: {bands:?}");
        for (from, to) in bands {
            assert!(
                from < last_x && (to - last_x).abs() <= 2.0,
                "{from}..{to} vs {last_x}"
            );
        }
    }
}
