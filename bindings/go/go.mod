module github.com/wtd/wtd/bindings/go

go 1.19
