package sqlnorm_test

import (
	"fmt"

	"github.com/chokepoint/chokepoint/internal/sqlnorm"
)

func ExampleNormalize() {
	fmt.Println(sqlnorm.Normalize("SELECT *\n  FROM orders -- by customer\n WHERE customer_id = 42 AND status IN ('new', 'paid') ORDER BY 1 LIMIT 20"))
	// Output: SELECT * FROM orders WHERE customer_id = $1 AND status IN ($2, $3) ORDER BY 1 LIMIT $4
}
