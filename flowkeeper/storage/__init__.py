"""Storage: tables, migrations, connections and the differences between databases."""
