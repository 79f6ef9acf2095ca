"Package metadata, read from settings.ini so that nbdev and pip agree on one source."
from configparser import ConfigParser
import setuptools

cfg = ConfigParser(delimiters=['='])
cfg.read('settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
statuses = ['Planning', 'Pre-Alpha', 'Alpha', 'Beta', 'Production/Stable', 'Mature', 'Inactive']
lic = licenses[cfg['license']]

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    author=cfg['author'],
    author_email=cfg['author_email'],
    url=cfg['git_url'],
    project_urls={'Documentation': cfg['doc_host'] + cfg['doc_baseurl'], 'Source': cfg['git_url']},
    keywords=cfg['keywords'].split(),
    license=lic[0],
    classifiers=[f"Development Status :: {cfg['status']} - {statuses[int(cfg['status'])]}",
                 f"Intended Audience :: {cfg['audience']}",
                 f"License :: {lic[1]}",
                 f"Natural Language :: {cfg['language']}",
                 'Programming Language :: Python :: 3'],
    packages=setuptools.find_packages(include=['hindsight_ref', 'hindsight_ref.*']),
    include_package_data=True,
    package_data={'hindsight_ref': ['fixtures/*.jsonl', 'fixtures/*.json', 'fixtures/toyworld/*', 'recipes/*.yaml']},
    python_requires=f">={cfg['min_python']}",
    install_requires=cfg['requirements'].split(),
    extras_require={'dev': cfg['dev_requirements'].split(),
                    **{k[len('extra_'):]: v.split() for k, v in cfg.items() if k.startswith('extra_')}},
    entry_points={'console_scripts': cfg['console_scripts'].split(),
                  'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    zip_safe=False,
)
