package load_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/chokepoint/chokepoint/internal/load"
	"github.com/chokepoint/chokepoint/internal/lowport"
	"github.com/chokepoint/chokepoint/internal/scenario"
)

// Offer 1,000 requests/s for a tenth of a second and read the result; the
// callback sees each window (here 50 ms) as it closes.
func ExampleEngine_Run() {
	l, err := lowport.Listen()
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	go srv.Serve(l)
	defer srv.Close()

	src, err := scenario.FromURLs([]string{"http://" + l.Addr().String() + "/hello"}, nil)
	if err != nil {
		panic(err)
	}
	eng, err := load.NewEngine(load.Config{Source: src, Window: 50 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	defer eng.Close()
	var windowed int64
	res, err := eng.Run(context.Background(), load.Constant(1000), load.Bound{Duration: 100 * time.Millisecond},
		func(w *load.Window) { windowed += w.All.Requests })
	if err != nil {
		panic(err)
	}
	s := res.Summary(load.DefaultMaxInflight)
	fmt.Println("requests:", s.Requests, "in windows:", windowed)
	fmt.Println("status codes:", s.StatusCodes)
	fmt.Println("endpoint:", s.Endpoints[0].Name)
	// Output:
	// requests: 100 in windows: 100
	// status codes: map[200:100]
	// endpoint: GET /hello
}

// Schedules: parse the flags' forms, or build them directly.
func ExampleParseSteps() {
	s, err := load.ParseSteps("100,200,400/10s")
	if err != nil {
		panic(err)
	}
	fmt.Println(s, "for", s.Span())
	fmt.Println(load.Ramp(0, 2000, 30*time.Second).Poisson())
	fmt.Println(load.Closed(50))
	// Output:
	// steps 100,200,400/s each 10s for 30s
	// ramp 0→2000/s over 30s (poisson)
	// closed 50 users
}
