package scenario_test

import (
	"fmt"

	"github.com/chokepoint/chokepoint/internal/scenario"
)

func ExampleParse() {
	src := []byte(`version: 1
base_url: http://127.0.0.1:8080
vars:
  order: {seq: {start: 100}}
requests:
  - name: create order
    method: POST
    url: /orders
    body: '{"seq": {{order}}}'
`)
	h, _ := scenario.ParseHeader("Authorization: Bearer t0ken")
	s, err := scenario.Parse("orders.yaml", src, "", []scenario.Header{h})
	if err != nil {
		fmt.Println(err)
		return
	}
	g := s.NewGenerator(1)
	var r scenario.Request
	for range 2 {
		g.Next(&r)
		fmt.Println(s.Endpoints()[r.Endpoint], r.Method, r.URL, string(r.Body))
	}
	fmt.Println(s.URLs())
	// Output:
	// create order POST http://127.0.0.1:8080/orders {"seq": 100}
	// create order POST http://127.0.0.1:8080/orders {"seq": 101}
	// [http://127.0.0.1:8080]
}

func ExampleParse_error() {
	_, err := scenario.Parse("orders.yaml", []byte("version: 1\nbase_url: http://127.0.0.1:8080\nrequests:\n  - url: /a\n    weght: 2\n"), "", nil)
	fmt.Println(err)
	// Output:
	// orders.yaml:5: requests[0].weght: unknown field (did you mean "weight"?)
}
