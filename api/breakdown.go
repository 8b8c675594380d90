package api

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/jobpixel/jobpixel/internal/store"
)

// breakdownParams are the query parameters the breakdown endpoint takes;
// any other is a 400 naming it.
var breakdownParams = []string{"dimension", "from", "to", "limit", "vacancy", "channel", "format"}

// maxVacancyLen is the longest vacancy id ingest accepts (its "v" field).
const maxVacancyLen = 256

// breakdownQuery reads and validates a breakdown request's parameters;
// its errors are 400s naming the parameter.
func (a *API) breakdownQuery(r *http.Request) (store.BreakdownQuery, error) {
	q := r.URL.Query()
	for name := range q {
		if !slices.Contains(breakdownParams, name) {
			return store.BreakdownQuery{}, &apiError{http.StatusBadRequest,
				fmt.Sprintf("%s: unknown parameter (want %s)", name, strings.Join(breakdownParams, ", "))}
		}
	}
	var bq store.BreakdownQuery
	var err error
	if bq.From, bq.To, err = dateRange(q, a.now()); err != nil {
		return bq, err
	}
	bq.Dimension = q.Get("dimension")
	if !slices.Contains(store.Dimensions, bq.Dimension) {
		return bq, &apiError{http.StatusBadRequest,
			fmt.Sprintf("dimension: unknown %q (want %s)", bq.Dimension, strings.Join(store.Dimensions, ", "))}
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > store.MaxBreakdownLimit {
			return bq, &apiError{http.StatusBadRequest, fmt.Sprintf("limit: want 1 to %d", store.MaxBreakdownLimit)}
		}
		bq.Limit = n
	}
	bq.Vacancy = q.Get("vacancy")
	if len(bq.Vacancy) > maxVacancyLen {
		return bq, &apiError{http.StatusBadRequest, fmt.Sprintf("vacancy: longer than %d bytes", maxVacancyLen)}
	}
	bq.Channel = q.Get("channel")
	if bq.Channel != "" && !slices.Contains(store.Channels, bq.Channel) {
		return bq, &apiError{http.StatusBadRequest,
			fmt.Sprintf("channel: unknown %q (want %s)", bq.Channel, strings.Join(store.Channels, ", "))}
	}
	return bq, nil
}

// breakdown serves GET /api/v1/campaigns/{id}/report/breakdown.
func (a *API) breakdown(w http.ResponseWriter, r *http.Request) {
	c, err := a.client(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	id := r.PathValue("id")
	if !store.ValidID(id) {
		a.fail(w, r, &apiError{http.StatusNotFound, "campaign not found"})
		return
	}
	bq, err := a.breakdownQuery(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	asCSV, err := wantCSV(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if _, err := a.clientCampaign(r.Context(), c.ID, id); err != nil {
		a.fail(w, r, err)
		return
	}
	b, err := a.st.Breakdown(r.Context(), c.ID, id, bq)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if asCSV {
		writeCSV(w, fmt.Sprintf("%s-%s-%s-%s.csv", id, bq.Dimension, b.From, b.To), breakdownCSV(b))
		return
	}
	writeJSON(w, http.StatusOK, b)
}
