package checks

import (
	"fmt"
	"regexp"
)

// migrationCommand matches the migration commands of common tools.
var migrationCommand = regexp.MustCompile(`(?i)` + `\b(` +
	`drizzle-kit\s+(migrate|push)|prisma\s+(migrate|db\s+push)|knex\s+migrate|sequelize(-cli)?\s+db:migrate|` +
	`typeorm(-ts-node-\w+)?\s+migration:run|alembic\s+upgrade|manage\.py\s+migrate|(rails|rake)\s+db:(migrate|prepare)|` +
	`goose\b.*\bup\b|migrate\s+.*-database\b.*\bup\b|flyway\b.*\bmigrate|liquibase\b.*\bupdate|node-pg-migrate\s+up|` +
	`dbmate\b.*\bup|atlas\s+migrate\s+apply|diesel\s+migration\s+run|sqlx\s+migrate\s+run|artisan\s+migrate|` +
	`(npm|pnpm|yarn|bun)\s+(run\s+)?(db:)?migrat\w*|ecto\.migrate)`)

var migrationRestartLoop = &Rule{
	ID: "migration-restart-loop", Severity: Error,
	Title: "migrations run at start-up of a service that restarts forever",
	Help:  "A service that runs migrations when it starts and has restart: always or unless-stopped retries a failed migration in an endless loop, loading the database and the broker on every attempt, while the deploy looks finished. Migrations belong in a one-off service that the deploy runs before starting the new version, and that stops the deploy when it fails. restart: on-failure without a count retries forever too.",
	check: func(in *Input) []Finding {
		var out []Finding
		for _, name := range in.serviceNames() {
			s := in.Compose.Services[name]
			cmd, pos := in.runs(name, s)
			m := migrationCommand.FindString(cmd)
			if m == "" {
				continue
			}
			policy, maxAttempts, set := restartPolicy(s)
			if set {
				pos = in.ServicePos(name, "restart")
				if s.Restart == "" {
					pos = in.ServicePos(name, "deploy", "restart_policy")
				}
			}
			fix := fmt.Sprintf("move %q into a separate migrate service with restart: \"no\" (deployer runs it before up and stops the deploy if it fails), and start %s without it", m, name)
			switch {
			case policy == "always" || policy == "unless-stopped":
				out = append(out, Finding{Rule: "migration-restart-loop", Service: name, Pos: pos,
					Message: fmt.Sprintf("%s runs migrations (%s) at start-up and has restart: %s: a failing migration restarts in a loop", name, m, policy),
					Fix:     fix})
			case policy == "on-failure" && maxAttempts == 0:
				out = append(out, Finding{Rule: "migration-restart-loop", Service: name, Pos: pos, Severity: Warning,
					Message: fmt.Sprintf("%s runs migrations (%s) at start-up with restart: on-failure and no retry count: Docker retries a failing migration forever", name, m),
					Fix:     fix + "; at the least cap the retries: restart: on-failure:3"})
			}
		}
		return out
	},
}
