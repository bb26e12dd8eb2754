// Package metadata holds drone-cache's build metadata types (meltwater/drone-cache internal/metadata), in a
// package of that name so that Go prints their types as drone-cache does (`%T` gives metadata.Repo).
package metadata

type Repo struct {
	Avatar    string
	Branch    string
	Link      string
	Name      string
	Namespace string
	Owner     string
	Private   bool
	Trusted   bool
}

type Build struct {
	Created  int64
	Deploy   string
	Event    string
	Finished int64
	Link     string
	Number   int
	Started  int64
	Status   string
}

type Author struct {
	Avatar string
	Email  string
	Name   string
}

type Commit struct {
	Author  Author
	Branch  string
	Link    string
	Message string
	Ref     string
	Remote  string
	Sha     string
}

type Metadata struct {
	Build  Build
	Commit Commit
	Repo   Repo
}
