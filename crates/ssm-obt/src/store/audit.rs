//! The audit log.
use super::*;

pub(super) fn audit_on(c: &Connection, action: &str, detail: &str) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO audit (action, detail) VALUES (?1, ?2)",
        params![action, detail],
    )
    .map(|_| ())
}

impl Store {
    pub(super) fn audit(&self, action: &str, detail: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO audit (action, detail) VALUES (?1, ?2)",
                params![action, detail],
            )
            .map_err(|e| StoreError::Sqlite {
                path: self.path.clone(),
                source: e,
            })?;
        Ok(())
    }

    /// The last `n` audit entries that name `key` (at, action, detail).
    pub fn audit_of(
        &self,
        key: &str,
        n: usize,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT at, action, detail FROM audit WHERE instr(detail, ?1) > 0 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(self.sq())?;
        let rows = st
            .query_map(params![key, n as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(self.sq())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.sq())
    }

    /// Number of audit entries.
    pub fn audit_len(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
            .map_err(|e| StoreError::Sqlite {
                path: self.path.clone(),
                source: e,
            })
    }
}
