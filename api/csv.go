package api

import (
	"encoding/csv"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/jobpixel/jobpixel/internal/store"
)

// wantCSV reports whether a report request asks for CSV: format=csv, or
// no format and an Accept header naming text/csv. format=json always
// answers JSON; another format is a 400 naming the parameter.
func wantCSV(r *http.Request) (bool, error) {
	switch f := r.URL.Query().Get("format"); f {
	case "csv":
		return true, nil
	case "json":
		return false, nil
	case "":
		for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
			if t, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && t == "text/csv" {
				return true, nil
			}
		}
		return false, nil
	default:
		return false, &apiError{http.StatusBadRequest, "format: want json or csv"}
	}
}

// writeCSV answers with rows as an RFC 4180 attachment named name (a
// file name of id characters, dashes and digits, so it needs no quoting
// rules): CRLF line ends, UTF-8 (invalid bytes replaced), every cell
// through csvCell.
func writeCSV(w http.ResponseWriter, name string, rows [][]string) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s"`, name))
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	for _, row := range rows {
		for i, c := range row {
			row[i] = csvCell(c)
		}
		_ = cw.Write(row) // a write error is the client going away
	}
	cw.Flush()
}

// csvCell neutralises spreadsheet formulas: a cell starting with '=', '+',
// '-', '@', a tab or a carriage return gets a leading "'", so a campaign
// name, source or vacancy id (other people's input) stays text when the
// file is opened in a spreadsheet. Invalid UTF-8 becomes U+FFFD.
func csvCell(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if s != "" && strings.IndexByte("=+-@\t\r", s[0]) >= 0 {
		return "'" + s
	}
	return s
}

// countsHeader names countsCells' columns.
var countsHeader = []string{"page_views", "apply_clicks", "applications", "vacancy_emails", "visitors"}

func countsCells(c store.Counts) []string {
	u := func(n uint64) string { return strconv.FormatUint(n, 10) }
	return []string{u(c.PageViews), u(c.ApplyClicks), u(c.Applications), u(c.VacancyEmails), u(c.Visitors)}
}

// funnelHeader names funnelCells' columns.
var funnelHeader = []string{"view_to_click", "click_to_application", "view_to_application"}

// funnelCells formats the rates, an empty cell for a rate without a step
// before it (null in JSON).
func funnelCells(f store.Funnel) []string {
	r := func(p *float64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatFloat(*p, 'f', -1, 64)
	}
	return []string{r(f.ViewToClick), r(f.ClickToApplication), r(f.ViewToApplication)}
}

// reportCSV is the campaign report as one table: a "total" row (with the
// bots), then a row per day and per source.
func reportCSV(rep store.Report) [][]string {
	rows := [][]string{append(append([]string{"section", "value"}, countsHeader...), "bots")}
	rows = append(rows, append(append([]string{"total", ""}, countsCells(rep.Totals)...), strconv.FormatUint(rep.Bots, 10)))
	for _, d := range rep.Days {
		rows = append(rows, append(append([]string{"day", d.Date}, countsCells(d.Counts)...), ""))
	}
	for _, s := range rep.Sources {
		rows = append(rows, append(append([]string{"source", s.Source}, countsCells(s.Counts)...), ""))
	}
	return rows
}

// breakdownCSV is a breakdown as one table: a header naming the dimension,
// a row per value, then "(other)" when there is one and "(total)".
func breakdownCSV(b store.Breakdown) [][]string {
	row := func(value string, c store.Counts, f store.Funnel) []string {
		return append(append([]string{value}, countsCells(c)...), funnelCells(f)...)
	}
	rows := [][]string{append(append([]string{b.Dimension}, countsHeader...), funnelHeader...)}
	for _, r := range b.Rows {
		rows = append(rows, row(r.Value, r.Counts, r.Funnel))
	}
	if b.Other != nil {
		rows = append(rows, row(b.Other.Value, b.Other.Counts, b.Other.Funnel))
	}
	return append(rows, row("(total)", b.Totals, b.Funnel))
}
